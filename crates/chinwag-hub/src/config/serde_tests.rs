//! The written forms of the hub's settings (feature `serde`).

use super::*;

#[test]
fn config_round_trips_and_refuses_unknown_keys() {
    let d = HubConfig::default();
    let text = toml::to_string(&d).unwrap();
    assert_eq!(toml::from_str::<HubConfig>(&text).unwrap(), d);
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<HubConfig>(&json).unwrap(), d);
    for line in [
        "sign_on = \"single\"",
        "default_ttl = \"7d\"",
        "partial = \"any_delivered\"",
        "password_wait = \"5s\"",
        "query = \"\"",
        "node = 0",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert_eq!(toml::from_str::<HubConfig>("").unwrap(), d, "all defaults");

    for (bad, named) in [
        ("sign_in = \"single\"\n", "`sign_in`"),
        ("[limits]\nmax_roomz = 1\n", "`max_roomz`"),
        ("[limits.offline]\nper_sender = 1\n", "`per_sender`"),
        (
            "[limits.message_rate]\nper_second = 1\nburst = 1\nper_minute = 1\n",
            "`per_minute`",
        ),
        ("[tokens]\nheader = true\n", "`header`"),
        ("sign_on = \"double\"\n", "double"),
        ("sign_on = { multi = 0 }\n", "at least 1"),
        ("auth_timeout = \"10 parsecs\"\n", "parsecs"),
        ("[limits]\nconnection_rate = \"sometimes\"\n", "sometimes"),
    ] {
        let e = toml::from_str::<HubConfig>(bad).unwrap_err();
        assert!(e.to_string().contains(named), "{bad:?}: {e}");
    }
}

#[test]
fn every_form_as_written() {
    let c: HubConfig = toml::from_str(
        r#"
        sign_on = { multi = 3 }
        partial = { queue_for_user = "1h" }
        [tokens]
        query = "token"
        [limits]
        max_rooms = 7
        connection_rate = "off"
        message_rate = { per_second = 0, burst = 5 }
        password_guess_rate = { per_second = 2, burst = 3 }
        [limits.offline]
        per_sender_bytes = 1024
        "#,
    )
    .unwrap();
    let d = HubConfig::default();
    let want = d
        .clone()
        .with_sign_on(SignOn::Multi { max: 3 })
        .with_partial(PartialDelivery::QueueForUser {
            ttl: Duration::from_secs(3600),
        })
        .with_tokens(d.tokens.clone().with_query(Some("token".into())))
        .with_limits(
            HubLimits::default()
                .with_max_rooms(7)
                .with_connection_rate(None)
                .with_message_rate(None)
                .with_password_guess_rate(Rate::new(2, 3))
                .with_offline(OfflineShares::default().with_per_sender_bytes(1024)),
        );
    assert_eq!(c, want);
    let text = toml::to_string(&c).unwrap();
    assert_eq!(toml::from_str::<HubConfig>(&text).unwrap(), want, "{text}");
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["sign_on"], serde_json::json!({ "multi": 3 }));
    assert_eq!(json["limits"]["connection_rate"], "off");
    assert_eq!(serde_json::from_value::<HubConfig>(json).unwrap(), want);
}
