//! Where the server keeps rooms' history ([`HistoryBackend`]): what rooms keep and how much a
//! join recovers are the hub's settings ([`RoomHistory`](crate::hub::RoomHistory) in
//! [`HubConfig::history`](crate::hub::HubConfig::history)).

use std::fmt;
#[cfg(feature = "queue-redb")]
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::queue::{History, HistoryConfig, MemoryHistory};

/// Where rooms' recent publications are kept, for members that come back (`join` with
/// `since`) and for the `history` operation.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum HistoryBackend {
    /// Nowhere: rooms keep nothing, and no member recovers.
    None,
    /// In memory (the default): lost when the process ends (rooms then start new epochs).
    #[default]
    Memory,
    /// Durable in one redb file (created if missing; its directory must exist), opened with
    /// these options. Feature `queue-redb`.
    #[cfg(feature = "queue-redb")]
    Redb(PathBuf, crate::queue::redb::RedbOptions),
    /// In Redis at this URL, shared by several nodes. Feature `queue-redis`.
    #[cfg(feature = "queue-redis")]
    Redis(String),
    /// A store you built.
    Custom(Arc<dyn History>),
}

impl fmt::Debug for HistoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryBackend::None => f.write_str("None"),
            HistoryBackend::Memory => f.write_str("Memory"),
            #[cfg(feature = "queue-redb")]
            HistoryBackend::Redb(p, o) => f.debug_tuple("Redb").field(p).field(o).finish(),
            #[cfg(feature = "queue-redis")]
            HistoryBackend::Redis(_) => f.write_str("Redis(..)"),
            HistoryBackend::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// The history of a cluster node: the cluster's Redis unless another Redis was set (the memory
/// default becomes the Redis at `cluster_url`); a per-node store is refused; none stays none
/// (rooms then stay per node). Whether the history is shared comes back too.
#[cfg(feature = "cluster-redis")]
pub(crate) fn cluster_history(
    backend: HistoryBackend,
    cluster_url: Option<&str>,
) -> Result<(HistoryBackend, bool)> {
    use crate::error::Error;
    match (backend, cluster_url) {
        (HistoryBackend::None, _) => Ok((HistoryBackend::None, false)),
        (HistoryBackend::Memory, Some(url)) => Ok((HistoryBackend::Redis(url.to_owned()), true)),
        (HistoryBackend::Redis(url), Some(cluster)) if url != cluster => {
            Err(Error::Config(format!(
                "a cluster node's room history must be on the cluster's Redis ({cluster}), not {url}"
            )))
        }
        (b @ (HistoryBackend::Redis(_) | HistoryBackend::Custom(_)), _) => Ok((b, true)),
        _ => Err(Error::Config(
            "a cluster node's room history is shared: the Redis history on the cluster's Redis \
             (the default), or none, not a per-node store"
                .into(),
        )),
    }
}

/// Opens the store (`None`: no history).
pub(crate) async fn open_history(
    backend: HistoryBackend,
    config: HistoryConfig,
    #[allow(unused_variables)] notices: Option<String>,
) -> Result<Option<Arc<dyn History>>> {
    Ok(match backend {
        HistoryBackend::None => None,
        HistoryBackend::Memory => Some(Arc::new(MemoryHistory::new(config))),
        #[cfg(feature = "queue-redb")]
        HistoryBackend::Redb(path, options) => {
            // Opening reads (and after a crash repairs) the file: off the runtime's threads.
            let h = tokio::task::spawn_blocking(move || {
                let clock = Arc::new(crate::queue::SystemClock);
                crate::queue::redb::RedbHistory::open_with(path, config, options, clock)
            })
            .await
            .map_err(|e| crate::error::Error::Io(std::io::Error::other(e)))??;
            Some(Arc::new(h))
        }
        #[cfg(feature = "queue-redis")]
        HistoryBackend::Redis(url) => {
            let mut h = crate::queue::redis::RedisHistory::connect(&url, config).await?;
            if let Some(prefix) = notices {
                h = h.with_notices(prefix);
            }
            Some(Arc::new(h))
        }
        HistoryBackend::Custom(h) => Some(h),
    })
}
