//! `chinwag.js` carries the same close-code table as the hub (`CloseCode::ALL`, plus 1006 for a
//! connection that broke without a close frame), with the same names and reconnect advice, so a
//! browser reconnects the way the server's `bye` says.

use chinwag_hub::CloseCode;

const JS: &str = include_str!("../../../clients/js/chinwag.js");

/// The rows of `CLOSE_CODES` in chinwag.js: (code, name, reconnect).
fn js_table() -> Vec<(u16, String, String)> {
    let start = JS.find("export const CLOSE_CODES").expect("the table");
    let body = &JS[start..start + JS[start..].find("});").unwrap()];
    body.lines()
        .filter_map(|l| {
            let l = l.trim();
            let (code, rest) = l.split_once(": Object.freeze({ name: '")?;
            let (name, rest) = rest.split_once("', reconnect: '")?;
            let (reconnect, _) = rest.split_once('\'')?;
            Some((code.parse().ok()?, name.to_owned(), reconnect.to_owned()))
        })
        .collect()
}

#[test]
fn the_js_client_has_the_hubs_close_code_table() {
    let js = js_table();
    let mut want: Vec<(u16, String, String)> = CloseCode::ALL
        .iter()
        .map(|c| (c.0, c.name().to_owned(), c.reconnect().as_str().to_owned()))
        .collect();
    want.push((
        1006,
        "abnormal".into(),
        CloseCode(1006).reconnect().as_str().into(),
    ));
    want.sort();
    let mut got = js.clone();
    got.sort();
    assert_eq!(
        got, want,
        "chinwag.js CLOSE_CODES vs chinwag_transport::CloseCode::ALL"
    );
}
