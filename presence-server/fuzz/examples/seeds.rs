//! Writes the seed inputs of every target into `corpus/<target>/seed-*`:
//! the protocol's golden frames, the CSV files of the tests, real tokens.
//! Run once from this directory with `cargo run --example seeds`, before the
//! first `cargo fuzz run`; `cargo fuzz cmin` keeps the seeds that add
//! coverage.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use presence_server::auth::{mint_hs256, Claims};
use presence_server::fuzz_targets::{
    token_selector, TokenMode, ES256_PRIVATE_PEM, HS256_SECRET, RS256_PRIVATE_PEM, RS256_PUBLIC_PEM,
};

const TAB: &str = "6f1c2b1e-8f5d-4c55-9a57-0b1e6cf1b9f0";
/// 2100-01-01: the committed tokens stay valid.
const FAR: u64 = 4_102_444_800;
/// 2023-11-14: long expired.
const PAST: u64 = 1_700_000_000;

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed written");
}

fn frames(hs256: &str) {
    let frames = [
        format!(
            r#"{{"type":"hello","token":"a.b.c","tab":"{TAB}","idle_ms":120,"client":"erp/1.2"}}"#
        ),
        format!(r#"{{"type":"hello","token":"t","tab":"{TAB}","idle_ms":0}}"#),
        format!(
            r#"{{"type":"hello","token":"{hs256}","tab":"{TAB}","idle_ms":3000,"client":"presence.js/1"}}"#
        ),
        r#"{"type":"activity","idle_ms":5}"#.into(),
        r#"{"type":"subscribe","id":1,"roster":"directory"}"#.into(),
        r#"{"type":"subscribe","id":"a","roster":"attendants"}"#.into(),
        r#"{"type":"unsubscribe","id":2,"roster":"team:sales"}"#.into(),
        format!(r#"{{"type":"refresh","token":"{hs256}"}}"#),
        r#"{"type":"logout"}"#.into(),
        // The golden bad frames.
        r#"{"type":"nope"}"#.into(),
        r#"{"type":"activity","idle_ms":"5"}"#.into(),
        r#"{"type":"activity","idle_ms":-1}"#.into(),
        r#"{"type":"subscribe","id":1,"roster":"team:"}"#.into(),
        r#"{"type":"subscribe","id":1,"roster":"everyone"}"#.into(),
        r#"{"type":"hello","token":"t","tab":"not-a-uuid","idle_ms":0}"#.into(),
        r#"{"idle_ms":5}"#.into(),
        r#"{"type":"subscribe","id":7,"roster":"team:crm \u00e9\n"}"#.into(),
        "not json".into(),
    ];
    for (i, f) in frames.iter().enumerate() {
        write("client_message", &format!("{i:02}"), f.as_bytes());
    }
}

fn csv_files() {
    let files: [&str; 8] = [
        "\u{feff}name;id;phone;available\n\"Silva; Ana\";007;0119;false\nBia;8;;\n",
        "id;name;profile\n1;A;boss\n1;B;admin\n",
        "name;colour\nA;red\n",
        "\u{feff}phone;name;id;nickname;email;profile;available;away_message\r\n\
         00119;\"Silva; Ana\";007;Ana;ana@x.test;admin;false;\"on \"\"leave\"\"\"\r\n\
         ;Bia;0042;;bia@x.test;;;\r\n\
         0800;\"Multi\nLine\";8;;;restricted;sim;\r\n",
        "id;name;email;profile\n1;One;one@x;standard\n2;Two;two@x;boss\n3;Three;three@x;\n1;Again;again@x;\n",
        "id;name;email\n1;One;one@x\n2;;two@x\n3;Three;not-an-email\n",
        "id;name;email\nann;Ann Renamed;ann@x\nb;Bee;b@x\nc;Cee;not-an-email\nd;Dee;d@x\ne;Eee;e@x\n",
        "id;name;email;available\nb;Bee;b@x;perhaps\nold;Old;;não\n0042;Bia;;1;extra\n",
    ];
    for (i, f) in files.iter().enumerate() {
        write("csv_import", &format!("{i:02}"), f.as_bytes());
    }
}

fn sign(alg: Algorithm, key: &EncodingKey, exp: u64) -> String {
    let claims = Claims {
        sub: "ann".into(),
        tid: "acme".into(),
        exp,
        iat: Some(PAST - 60),
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("test keys sign")
}

fn tokens(hs256: &str) {
    let rsa = EncodingKey::from_rsa_pem(RS256_PRIVATE_PEM).expect("RSA key");
    let ec = EncodingKey::from_ec_pem(ES256_PRIVATE_PEM).expect("EC key");
    let confused = EncodingKey::from_secret(RS256_PUBLIC_PEM);
    let text = |v: u8, name: &str, token: &str| {
        let mut data = vec![token_selector(v, TokenMode::Text)];
        data.extend_from_slice(token.as_bytes());
        write("token", name, &data);
    };
    text(0, "hs256", hs256);
    text(
        0,
        "hs256-expired",
        &mint_hs256(HS256_SECRET, "acme", "ann", PAST, 60),
    );
    text(
        0,
        "hs256-other-key",
        &mint_hs256(b"other", "acme", "ann", FAR - 60, 60),
    );
    text(1, "rs256", &sign(Algorithm::RS256, &rsa, FAR));
    text(1, "rs256-expired", &sign(Algorithm::RS256, &rsa, PAST));
    text(1, "rs256-confused", &sign(Algorithm::HS256, &confused, FAR));
    text(2, "es256", &sign(Algorithm::ES256, &ec, FAR));
    text(2, "es256-expired", &sign(Algorithm::ES256, &ec, PAST));
    text(0, "none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1MSIsInRpZCI6ImFjbWUiLCJleHAiOjQxMDI0NDQ4MDB9.");
    let structured = |v: u8, mode: TokenMode, name: &str, parts: &[&str]| {
        let mut data = vec![token_selector(v, mode)];
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                data.push(0xFF);
            }
            data.extend_from_slice(p.as_bytes());
        }
        write("token", name, &data);
    };
    let claims = format!(r#"{{"sub":"ann","tid":"acme","exp":{FAR},"iat":{PAST}}}"#);
    for (v, alg) in [(0, "HS256"), (1, "RS256"), (2, "ES256")] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let lower = alg.to_lowercase();
        structured(
            v,
            TokenMode::Parts,
            &format!("{lower}-parts"),
            &[&header, &claims, "sig"],
        );
        structured(
            v,
            TokenMode::Signed,
            &format!("{lower}-signed"),
            &[&header, &claims],
        );
        structured(
            v,
            TokenMode::Signed,
            &format!("{lower}-signed-expired"),
            &[&header, r#"{"sub":"ann","tid":"acme","exp":1700000000}"#],
        );
        structured(
            v,
            TokenMode::Confused,
            &format!("{lower}-confused"),
            &[r#"{"alg":"HS256","typ":"JWT"}"#, &claims],
        );
    }
    structured(
        0,
        TokenMode::Signed,
        "hs256-signed-no-exp",
        &[
            r#"{"alg":"HS256","kid":"k1"}"#,
            r#"{"sub":"ann","tid":"acme","nbf":1,"aud":["x"]}"#,
        ],
    );
}

fn main() {
    let hs256 = mint_hs256(HS256_SECRET, "acme", "ann", FAR - 3600, 3600);
    frames(&hs256);
    csv_files();
    tokens(&hs256);
}
