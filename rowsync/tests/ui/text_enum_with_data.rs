use rowsync::TextEnum;

#[derive(TextEnum)]
enum Status {
    Draft,
    Published(u32),
    #[rowsync(renam = "x")]
    Hidden,
}

fn main() {}
