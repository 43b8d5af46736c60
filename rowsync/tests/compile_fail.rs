//! A wrong attribute is a compile error pointing at it.

#[test]
fn bad_attributes_are_compile_errors_with_spans() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
