//! `Proxy`: the cache ambassador (`shardkit::proxy`) run inside a Python
//! process, for tests and sidecars. Thin: the YAML goes to core as it is,
//! core binds and serves on the process's runtime, and the GIL is released
//! while it starts, reloads and stops (each blocks briefly: binding, building
//! pools, waiting for the proxy's tasks to end).

use std::sync::RwLock;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use shardkit::proxy::{Proxy, ProxyConfig, ProxyOptions};
use shardkit::runtime::Home;
use shardkit::Error;

use crate::errors::OrRaise;
use crate::scope;

/// A cache proxy (nutcracker's YAML, memcache text and meta, Redis) serving
/// every pool of `config` in this process, on worker threads of its own
/// (`threads`; by default `SHARDKIT_THREADS`, else the core count up to 8).
///
/// `config` is nutcracker's YAML plus shardkit's pool keys (`algorithm`,
/// `replicas`, `hot_keys`, ...); a bad one raises `ConfigError` naming the
/// key and line. Listen addresses may use port 0: `address(pool)` tells the
/// port chosen. `stats_addr` serves nutcracker's JSON stats, `metrics_addr`
/// Prometheus text at `/metrics`; nothing else listens. An address in use
/// raises `ShardkitIOError`, with nothing left listening.
///
/// `stop()` (or leaving a `with` block) closes the listeners, waits a
/// bounded while for the proxy's tasks and stops its threads; connections already open get the
/// replies to what they sent. After it every method raises
/// `InvalidArgumentError`; `stop()` again does nothing.
#[pyclass(frozen, module = "shardkit", name = "Proxy")]
pub(crate) struct PyProxy {
    /// `None` once stopped. Readers share it; `stop` takes it.
    inner: RwLock<Option<Proxy>>,
    /// The process whose runtime serves the proxy: a forked child has only
    /// the listening sockets, with nothing accepting on them.
    home: Home,
    stats_addr: Option<String>,
    metrics_addr: Option<String>,
}

impl PyProxy {
    /// Runs `f` on the running proxy, with the GIL released (the lock is
    /// only ever taken without the GIL, so a thread holding it never waits
    /// for the GIL while another waits for it).
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Proxy) -> shardkit::Result<T> + Send,
    ) -> PyResult<T> {
        self.home.check("this Proxy").or_raise(py)?;
        py.detach(|| {
            let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some(proxy) => f(proxy),
                None => Err(Error::invalid(
                    "the proxy is stopped; start a new shardkit.Proxy",
                )),
            }
        })
        .or_raise(py)
    }
}

#[pymethods]
impl PyProxy {
    #[new]
    #[pyo3(signature = (config, *, stats_addr = None, metrics_addr = None, threads = None))]
    fn new(
        py: Python<'_>,
        config: &str,
        stats_addr: Option<String>,
        metrics_addr: Option<String>,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        let home = Home::here();
        let options = ProxyOptions {
            stats_addr,
            metrics_addr,
            threads,
        };
        let proxy = py
            .detach(|| Proxy::start(ProxyConfig::parse(config)?, options))
            .or_raise(py)?;
        Ok(PyProxy {
            stats_addr: proxy.stats_addr().map(|a| a.to_string()),
            metrics_addr: proxy.metrics_addr().map(|a| a.to_string()),
            inner: RwLock::new(Some(proxy)),
            home,
        })
    }

    /// The address pool `pool` listens on (`host:port`, the port the system
    /// chose for `:0`; or the unix socket path). `NotFoundError` names the
    /// pools there are.
    fn address(&self, py: Python<'_>, pool: &str) -> PyResult<String> {
        self.with(py, |p| p.address(pool))
    }

    /// Every pool's name and the address it listens on.
    fn listening<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let all = self.with(py, |p| Ok(p.listening()))?;
        let out = PyDict::new(py);
        for (name, addr) in all {
            out.set_item(name, addr)?;
        }
        Ok(out)
    }

    /// Applies a new configuration without dropping client connections:
    /// pools that stay keep their listeners (a pool first given port 0 may
    /// name either `:0` or the port it got), new pools start listening,
    /// removed pools stop. On any error (`ConfigError`, `ShardkitIOError`)
    /// nothing changes.
    fn reload(&self, py: Python<'_>, config: &str) -> PyResult<()> {
        self.with(py, |p| p.reload(ProxyConfig::parse(config)?))
    }

    /// The Prometheus text exposition of every pool, as `/metrics` serves it.
    fn metrics(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |p| Ok(p.metrics()))
    }

    /// nutcracker's stats, as the stats address serves them, parsed: the
    /// service fields (`service`, `source`, `version`, `uptime`,
    /// `timestamp`, `total_connections`, `curr_connections`) and one dict
    /// per pool, holding the pool's counters and one dict per server.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.with(py, |p| Ok(p.stats_json()))?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// Where nutcracker's JSON stats are served (`host:port`), if asked for.
    #[getter]
    fn stats_addr(&self) -> Option<String> {
        self.stats_addr.clone()
    }

    /// Where Prometheus `/metrics` is served (`host:port`), if asked for.
    #[getter]
    fn metrics_addr(&self) -> Option<String> {
        self.metrics_addr.clone()
    }

    /// Whether `stop()` was called.
    #[getter]
    fn stopped(&self, py: Python<'_>) -> bool {
        py.detach(|| {
            self.inner
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_none()
        })
    }

    /// Closes the listeners and waits (at most 5 s) for the proxy's tasks;
    /// connections already open get the replies to what they sent. Calls in
    /// flight on other threads finish first. Idempotent.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.home.check("this Proxy").or_raise(py)?;
        py.detach(|| {
            let proxy = self.inner.write().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(proxy) = proxy {
                proxy.stop();
            }
        });
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type, exc, tb))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc, tb);
        scope::exit(exc_type, self.stop(py))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.with(py, |p| Ok(p.listening())) {
            Ok(all) => {
                let pools: Vec<String> = all.iter().map(|(n, a)| format!("{n:?}: {a:?}")).collect();
                format!("Proxy({{{}}})", pools.join(", "))
            }
            Err(_) if !self.home.is_here() => "Proxy(<made before fork()>)".to_string(),
            Err(_) => "Proxy(<stopped>)".to_string(),
        }
    }
}

impl Drop for PyProxy {
    fn drop(&mut self) {
        let proxy = self
            .inner
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(proxy) = proxy {
            if self.home.is_here() {
                // Dropped by the garbage collector, which holds the GIL:
                // let other threads run while the proxy's tasks end (a
                // bounded wait, usually milliseconds). None of them needs
                // the GIL, so holding it (at interpreter shutdown) is safe.
                let mut proxy = Some(proxy);
                let _ = Python::try_attach(|py| {
                    let p = proxy.take();
                    py.detach(move || drop(p));
                });
                drop(proxy);
            } else {
                // A forked child: the proxy's tasks are the parent's, on a
                // runtime with no threads here; stopping would wait the full
                // 5 s for tasks that never run.
                std::mem::forget(proxy);
            }
        }
    }
}

/// Adds `Proxy` to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyProxy>()
}
