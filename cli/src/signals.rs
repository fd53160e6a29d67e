//! The signals a long-running server command answers: SIGHUP reloads,
//! SIGTERM and SIGINT stop. Installed before anything listens, so a HUP
//! sent as soon as the port answers reloads instead of killing (SIGHUP's
//! default).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The server's signal streams.
pub(crate) struct ServerSignals {
    pub(crate) hup: Signal,
    pub(crate) term: Signal,
    pub(crate) int: Signal,
}

/// Installs the handlers on `rt`; `None` (after saying so) when the
/// system refuses.
pub(crate) fn install(rt: &tokio::runtime::Runtime) -> Option<ServerSignals> {
    let _in_runtime = rt.enter();
    match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(hup), Ok(term), Ok(int)) => Some(ServerSignals { hup, term, int }),
        _ => {
            eprintln!("shardkit: error: cannot install signal handlers");
            None
        }
    }
}
