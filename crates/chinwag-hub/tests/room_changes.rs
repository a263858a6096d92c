//! `Hub::change_room` (the server API's `change_room`): a password set on an open room refuses
//! a wrong one and lets the right one in, removing it opens the room again, a lowered member
//! limit refuses the next join, and a room changed is kept when its last member leaves.

use std::sync::Arc;
use std::time::Duration;

use chinwag_hub::auth::{Authenticated, BoxFuture};
use chinwag_hub::{
    Attach, Close, Device, Event, Format, Hub, Link, RoomChanges, RoomError, RoomOptions,
};
use chinwag_session::SendError as SessionSendError;
use chinwag_session::codec::Encoded;

struct NullLink;

impl Link for NullLink {
    fn try_send(&self, _: Encoded) -> Result<(), SessionSendError> {
        Ok(())
    }
    fn send(&self, _: Encoded, _: Duration) -> BoxFuture<'_, Result<(), SessionSendError>> {
        Box::pin(async { Ok(()) })
    }
    fn close(&self, _: &Close, _: Option<Encoded>) {}
    fn queue_len(&self) -> usize {
        0
    }
    fn is_closed(&self) -> bool {
        false
    }
}

struct NoFormat;

impl Format for NoFormat {
    fn encode(&self, _: &Event) -> Option<Encoded> {
        None
    }
}

async fn conn(hub: &Hub, user: &str) -> chinwag_hub::Conn {
    let attach = Attach::new(
        Arc::new(NullLink),
        hub.register_format(Arc::new(NoFormat)),
        "test",
    );
    hub.attach(Authenticated::new(Device::new(user, "d")), attach)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_password_set_later_is_asked_and_removing_it_opens_the_room() {
    let hub = Hub::builder().build();
    hub.create_room("team", RoomOptions::new()).await.unwrap();
    let info = hub
        .change_room("team", RoomChanges::new().with_password(Some("s3cret")))
        .await
        .unwrap();
    assert!(info.protected);
    let ada = conn(&hub, "ada").await;
    assert_eq!(
        hub.join(&ada, "team", Some("wrong")).await,
        Err(RoomError::WrongPassword)
    );
    assert_eq!(
        hub.join(&ada, "team", None).await,
        Err(RoomError::WrongPassword)
    );
    assert_eq!(
        hub.join(&ada, "team", Some("s3cret"))
            .await
            .unwrap()
            .members,
        1
    );

    let info = hub
        .change_room("team", RoomChanges::new().with_password(None::<String>))
        .await
        .unwrap();
    assert!(!info.protected);
    let bob = conn(&hub, "bob").await;
    assert_eq!(hub.join(&bob, "team", None).await.unwrap().members, 2);
    hub.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_lowered_member_limit_refuses_the_next_join_and_keeps_the_members() {
    let mut config = chinwag_hub::HubConfig::default();
    config.auto_create_rooms = true;
    let hub = Hub::builder().config(config).build();
    let ada = conn(&hub, "ada").await;
    // A room made by a join: it would go with its last member.
    hub.join(&ada, "lobby", None).await.unwrap();
    let info = hub
        .change_room("lobby", RoomChanges::new().with_max_members(1))
        .await
        .unwrap();
    assert_eq!(info.members, 1);
    let bob = conn(&hub, "bob").await;
    assert_eq!(hub.join(&bob, "lobby", None).await, Err(RoomError::Full));
    // Changed, it is kept when its last member leaves.
    assert!(hub.leave(&ada, "lobby"));
    assert_eq!(hub.room("lobby").map(|r| r.members), Some(0));

    assert_eq!(
        hub.change_room("nowhere", RoomChanges::new()).await,
        Err(RoomError::NoSuchRoom)
    );
    let long = "x".repeat(hub.config().limits.max_password_bytes + 1);
    assert_eq!(
        hub.change_room("lobby", RoomChanges::new().with_password(Some(long)))
            .await,
        Err(RoomError::BadPassword)
    );
    hub.shutdown(Duration::from_secs(5)).await;
}
