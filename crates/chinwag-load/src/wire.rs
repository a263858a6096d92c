//! The bytes a server's TCP sockets sent: bytes on the wire, for the permessage-deflate rows.
//!
//! The kernel counts, per TCP socket, the payload bytes the peer acknowledged (`tcp_info`'s
//! `tcpi_bytes_acked`, Linux 4.1+): every byte the server wrote to that connection, whatever
//! wrote it (frames, headers, pings), before TCP/IP headers, counted once. `ss -tinHO` prints it
//! (`bytes_acked:N`) for every established socket whose local port is the server's. A sample
//! maps each such socket (local and peer address) to that count; [`sent_between`] sums the
//! growth of the sockets present in both samples (a connection opened or closed in between
//! counts for nothing).
//!
//! Why not `/proc/<pid>/io`'s `wchar`: it counts `write(2)` and `writev(2)`, not `send(2)` or
//! `sendmsg(2)`. Which one a server uses depends on its engine (`strace -c` on `examples/hub`,
//! 2026-12-07: yawc writes its sockets with `writev`, fastwebsockets with `sendto`, the
//! standard library's `write` on a TCP stream), so `wchar` would count the yawc rows and miss
//! others; it also counts the server's log and file writes. `tcp_info` counts every engine's
//! socket bytes and nothing else.

use std::collections::BTreeMap;
use std::process::Command;

/// Bytes acknowledged so far, per socket: `(local address, peer address)` to bytes.
pub type WireSample = BTreeMap<(String, String), u64>;

/// Samples the established TCP sockets whose local port is one of `ports` (the server's
/// listening ports) with `ss`. Errors when `ss` cannot be run or fails.
pub fn sample(ports: &[u16]) -> Result<WireSample, String> {
    if ports.is_empty() {
        return Ok(WireSample::new());
    }
    let filter = ports
        .iter()
        .map(|p| format!("sport = :{p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let out = Command::new("ss")
        .args(["-t", "-i", "-n", "-H", "-O", "state", "established"])
        .arg(format!("( {filter} )"))
        .output()
        .map_err(|e| format!("cannot run `ss` (iproute2) to count bytes on the wire: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ss` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(parse_ss(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses the output of `ss -tinHO state established …`: one socket per line, `Recv-Q Send-Q
/// LOCAL PEER` then its `tcp_info` fields; a socket without `bytes_acked` (nothing sent yet)
/// counts 0.
pub fn parse_ss(out: &str) -> WireSample {
    let mut sample = WireSample::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `Recv-Q Send-Q LOCAL PEER …`: anything else is not a socket line.
        let queues = fields.len() >= 4 && fields[..2].iter().all(|q| q.parse::<u64>().is_ok());
        let (local, peer) = (fields.get(2), fields.get(3));
        let (Some(local), Some(peer)) = (local, peer) else {
            continue;
        };
        if !queues || !local.contains(':') || !peer.contains(':') {
            continue;
        }
        let acked = fields
            .iter()
            .find_map(|f| f.strip_prefix("bytes_acked:"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        sample.insert(((*local).to_owned(), (*peer).to_owned()), acked);
    }
    sample
}

/// The bytes sent between samples `a` and `b`: the growth of every socket present in both.
pub fn sent_between(a: &WireSample, b: &WireSample) -> u64 {
    b.iter()
        .filter_map(|(k, after)| Some(after.saturating_sub(*a.get(k)?)))
        .sum()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn parses_ss_lines_and_sums_growth() {
        let a = parse_ss(
            "0      0      127.0.0.1:9400 127.0.0.2:40001 bbr wscale:10,10 rto:204 \
             bytes_sent:100 bytes_acked:100 segs_out:1\n\
             0      0      127.0.0.1:9400 127.0.0.3:40002 cubic rto:204 segs_out:0\n\
             0      0      127.0.0.1:9400 127.0.0.4:40003 bytes_acked:7\n",
        );
        assert_eq!(a.len(), 3);
        assert_eq!(a[&("127.0.0.1:9400".into(), "127.0.0.3:40002".into())], 0);
        let b = parse_ss(
            "0 0 127.0.0.1:9400 127.0.0.2:40001 bytes_acked:1100\n\
             0 0 127.0.0.1:9400 127.0.0.3:40002 bytes_acked:50\n\
             0 0 127.0.0.1:9400 127.0.0.5:40004 bytes_acked:999\n",
        );
        // 1 000 + 50; the socket gone and the new one count for nothing.
        assert_eq!(sent_between(&a, &b), 1050);
        assert_eq!(parse_ss("\n  \nnot a socket line\n0 0 x y\n").len(), 0);
    }

    #[test]
    fn counts_what_a_socket_sent() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        let before = sample(&[port]).expect("ss runs");
        assert_eq!(before.len(), 1, "{before:?}");
        server.write_all(&[7; 12_345]).unwrap();
        let mut got = vec![0; 12_345];
        client.read_exact(&mut got).unwrap();
        // Acknowledged once the client's kernel has it: poll until then, with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let sent = sent_between(&before, &sample(&[port]).unwrap());
            if sent == 12_345 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "sent {sent}");
            std::thread::yield_now();
        }
        // The client's writes are not the server's.
        client.write_all(&[1; 100]).unwrap();
        let mut back = [0; 100];
        server.read_exact(&mut back).unwrap();
        assert_eq!(sent_between(&before, &sample(&[port]).unwrap()), 12_345);
    }
}
