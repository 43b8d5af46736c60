//! Every supported field type decodes to what plain SQL wrote, nulls included.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use rowsync::{DecodeError, LoadError};
use uuid::Uuid;

use crate::support::fixture;
use crate::support::schemas::{Mood, Sample, Status};

const INSERT: &str = "INSERT INTO samples (id, small, medium, big, ratio, precise, flag, body, \
    short_name, data, born, alarm, seen_at, created_at, doc, status, feeling, price) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::text::mood, \
    $18::text::numeric)";

#[tokio::test]
async fn every_field_type_round_trips_from_sql() {
    let f = fixture().await;
    let full = Sample {
        id: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        small: -7,
        medium: 70_000,
        big: Some(9_000_000_000),
        ratio: 0.5,
        precise: Some(1.0 / 3.0),
        flag: true,
        body: "héllo \"quoted\"".into(),
        short: Some("short".into()),
        data: Some(vec![0, 1, 2, 255]),
        born: NaiveDate::from_ymd_opt(1990, 2, 28),
        alarm: NaiveTime::from_hms_micro_opt(6, 30, 15, 250_000),
        seen_at: NaiveDate::from_ymd_opt(2024, 1, 2).and_then(|d| d.and_hms_micro_opt(3, 4, 5, 6)),
        created_at: DateTime::<Utc>::from_timestamp(1_700_000_000, 123_000).unwrap(),
        doc: Some(serde_json::json!({"a": [1, 2, {"b": null}], "c": "d"})),
        status: Status::InReview,
        feeling: Some(Mood::SoSo),
        price: Some("-1234567890.1234".parse().unwrap()),
        scratch: Vec::new(),
    };
    let empty = Sample {
        id: Uuid::from_u128(2),
        big: None,
        precise: None,
        short: None,
        data: None,
        born: None,
        alarm: None,
        seen_at: None,
        doc: None,
        status: Status::Draft,
        feeling: None,
        price: None,
        ..full.clone()
    };
    for s in [&full, &empty] {
        let status = match s.status {
            Status::Draft => "draft",
            Status::Published => "published",
            Status::InReview => "in-review",
        };
        let feeling: Option<&str> = s.feeling.map(|_| "so_so");
        let price: Option<String> = s.price.map(|p| p.to_string());
        f.sql
            .execute(
                INSERT,
                &[
                    &s.id,
                    &s.small,
                    &s.medium,
                    &s.big,
                    &s.ratio,
                    &s.precise,
                    &s.flag,
                    &s.body,
                    &s.short,
                    &s.data,
                    &s.born,
                    &s.alarm,
                    &s.seen_at,
                    &s.created_at,
                    &s.doc,
                    &status,
                    &feeling,
                    &price,
                ],
            )
            .await
            .unwrap();
    }
    let got = f.rowsync.query::<Sample>().get(full.id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&full));
    let got = f.rowsync.query::<Sample>().get(empty.id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&empty));

    // text enums and renamed columns work in filters too
    let drafts = f
        .rowsync
        .query::<Sample>()
        .filter(rowsync::Filter::eq("status", "draft"))
        .filter(rowsync::Filter::is_null("short_name"))
        .all()
        .await
        .unwrap();
    assert_eq!(drafts, vec![empty]);

    // a numeric parameter compares by value, whatever its scale
    let priced = f
        .rowsync
        .query::<Sample>()
        .filter(rowsync::Filter::eq(
            "price",
            "-1234567890.12340".parse::<rowsync::Decimal>().unwrap(),
        ))
        .all()
        .await
        .unwrap();
    assert_eq!(priced, vec![full]);
}

#[tokio::test]
async fn a_value_the_type_cannot_hold_is_a_decode_error_not_a_panic() {
    let f = fixture().await;
    f.sql
        .batch_execute(
            "INSERT INTO samples (id, small, medium, ratio, flag, body, created_at, status)
             VALUES ('00000000-0000-0000-0000-000000000009', 1, 1, 1, true, 'x', now(), 'archived')",
        )
        .await
        .unwrap();
    let err = f.rowsync.query::<Sample>().all().await.unwrap_err();
    match &err {
        LoadError::Decode { cause, .. } => {
            assert!(
                matches!(cause, DecodeError::Column { column: "status", cause, .. }
                    if matches!(**cause, DecodeError::UnknownVariant { .. })),
                "{cause:?}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("`archived` is not a variant of enum `Status`"),
        "{err}"
    );

    // a numeric `Decimal` cannot hold: an error naming the column, not a rounded value
    f.sql
        .batch_execute(
            "UPDATE samples SET status = 'draft', price = 'NaN'
             WHERE id = '00000000-0000-0000-0000-000000000009'",
        )
        .await
        .unwrap();
    let err = f.rowsync.query::<Sample>().all().await.unwrap_err();
    assert!(
        matches!(
            &err,
            LoadError::Decode {
                cause: DecodeError::Column {
                    column: "price",
                    ..
                },
                ..
            }
        ),
        "{err:?}"
    );
}
