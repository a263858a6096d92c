//! The room table's own tests.

use super::*;

fn room(epoch: u64, max_members: usize) -> NewRoom {
    NewRoom {
        epoch,
        seq: 0,
        held_from: 1,
        max_members,
        keep: None,
    }
}

fn member(n: &str) -> Member<u32> {
    Member {
        device: Device::new(n, "d"),
        handle: 0,
    }
}

#[test]
fn rooms_made_by_a_join_go_with_their_last_member() {
    let mut rooms = Rooms::<u32>::default();
    let d = rooms.door("lobby", Some(room(7, 10)), false).unwrap();
    assert!(d.created && d.password.is_none());
    rooms
        .add_member("lobby", 7, ConnId(1), member("a"), None)
        .unwrap();
    assert!(
        !rooms
            .door("lobby", Some(room(8, 10)), false)
            .unwrap()
            .created
    );
    let left = rooms.remove_member("lobby", ConnId(1)).unwrap();
    assert!(left.removed && left.presence.is_none());
    assert_eq!(rooms.len(), 0);
    assert_eq!(
        rooms.door("lobby", None, false),
        Err(RoomRefusal::NoSuchRoom),
        "without auto-creation"
    );
}

#[test]
fn a_join_of_a_room_made_again_is_refused() {
    let mut rooms = Rooms::<u32>::default();
    rooms.door("r", Some(room(1, 10)), false).unwrap();
    assert!(rooms.forget_if_empty("r", 1));
    rooms.door("r", Some(room(2, 10)), false).unwrap();
    assert_eq!(
        rooms.add_member("r", 1, ConnId(1), member("a"), None).err(),
        Some(RoomRefusal::NoSuchRoom)
    );
    assert!(
        rooms
            .add_member("r", 2, ConnId(1), member("a"), None)
            .is_ok()
    );
}

#[test]
fn full_rooms_and_sequence_with_snapshots() {
    let mut rooms = Rooms::<u32>::default();
    rooms.create("r", room(5, 2), None, true).unwrap();
    assert_eq!(
        rooms.create("r", room(6, 2), None, false).err(),
        Some(RoomRefusal::Exists)
    );
    let p = rooms
        .add_member("r", 5, ConnId(1), member("a"), None)
        .unwrap()
        .presence;
    assert_eq!(p.unwrap().to.len(), 0, "presence goes to the others");
    let Added {
        info, presence: p, ..
    } = rooms
        .add_member("r", 5, ConnId(2), member("b"), None)
        .unwrap();
    assert_eq!(info.members, 2);
    assert_eq!(
        p.unwrap().to.iter().map(|m| m.0).collect::<Vec<_>>(),
        [ConnId(1)]
    );
    assert_eq!(
        rooms.add_member("r", 5, ConnId(3), member("c"), None).err(),
        Some(RoomRefusal::Full)
    );
    let (m1, s1) = rooms.publish("r", None, Body::text("x"), 0).unwrap();
    let (m2, s2) = rooms.publish("r", None, Body::text("y"), 0).unwrap();
    assert_eq!((m1.seq, m2.seq, m1.epoch), (1, 2, 5));
    assert!(
        Arc::ptr_eq(&s1, &s2),
        "unchanged membership shares its snapshot"
    );
    let left = rooms.remove_member("r", ConnId(1)).unwrap();
    assert!(!left.removed, "a created room stays");
    let (_, s3) = rooms.publish("r", None, Body::text("z"), 0).unwrap();
    assert_eq!(s3.iter().map(|m| m.0).collect::<Vec<_>>(), [ConnId(2)]);
    assert_eq!(rooms.info("r").unwrap().seq, 3);
}

#[test]
fn member_pages() {
    let mut rooms = Rooms::<u32>::default();
    rooms.create("r", room(1, 100), None, false).unwrap();
    for i in 1..=5 {
        rooms
            .add_member("r", 1, ConnId(i), member(&format!("u{i}")), None)
            .unwrap();
    }
    let (page, more) = rooms.members("r", None, 2).unwrap();
    assert_eq!(page.iter().map(|m| m.0.0).collect::<Vec<_>>(), [1, 2]);
    assert!(more);
    let (page, more) = rooms.members("r", Some(ConnId(4)), 2).unwrap();
    assert_eq!(page.iter().map(|m| m.0.0).collect::<Vec<_>>(), [5]);
    assert!(!more);
    assert!(rooms.members("nope", None, 2).is_none());
}
