//! MCP sessions of the HTTP face: who owns each, and how many there may be.
//!
//! [`Sessions`] is the rmcp [`SessionManager`] of `/mcp`: rmcp's in-memory
//! [`LocalSessionManager`] (idle timeout, event routing) plus an owner per session and limits.
//! - **Ownership**: a session belongs to the principal (agent, and whether it came with a key)
//!   whose `initialize` created it. `http::guard_layer` looks up every request that names a
//!   session ([`Sessions::check`]) and answers a request from anyone else exactly as it
//!   answers an unknown session id (404), so a session id is no capability by itself and the
//!   owner's results (including a resumed event stream) reach only the owner.
//! - **Limits**: a session slot is reserved before the `initialize` request reaches rmcp
//!   ([`Sessions::reserve`]: per principal and in total, else 503), consumed by
//!   `create_session` (the reservation travels in a task-local, because rmcp's
//!   `create_session` takes no arguments), released when the session closes for any reason
//!   (DELETE, idle timeout, shutdown, absolute lifetime).
//! - **Lifetime**: a session older than its absolute lifetime is closed at its next request
//!   (answered 404, so the client initializes again) and swept when slots run out; the idle
//!   timeout closes the rest.
//!
//! Session ids are never logged: [`short`] gives a hash prefix for correlation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, SessionConfig,
};
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};
use sha2::{Digest as _, Sha256};

/// Who opened a session: the agent, and whether it authenticated with a key (an anonymous
/// caller under `--anonymous-agent` acting as the same agent is someone else).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub agent: Arc<str>,
    pub keyed: bool,
}

/// The session limits of `serve` (flags `--mcp-*`).
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Open sessions per principal.
    pub per_agent: usize,
    /// Open sessions in total.
    pub total: usize,
    /// A session with no request for this long is closed.
    pub idle: Duration,
    /// A session is closed this long after its `initialize`, however busy.
    pub lifetime: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            per_agent: 64,
            total: 1024,
            idle: Duration::from_secs(300),
            lifetime: Duration::from_secs(8 * 3600),
        }
    }
}

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefused {
    #[error(
        "agent `{agent}` has {limit} MCP sessions open (--mcp-max-sessions-per-agent); close one (DELETE /mcp) or retry later"
    )]
    PerAgent { agent: Arc<str>, limit: usize },
    #[error("the server has {limit} MCP sessions open (--mcp-max-sessions); retry later")]
    Total { limit: usize },
}

/// What [`Sessions::check`] found for a session id and a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The caller owns the live session.
    Owner,
    /// No such session for this caller (unknown, someone else's, or expired and now closed).
    NotFound,
}

#[derive(Debug)]
struct Owner {
    principal: Principal,
    created: Instant,
}

#[derive(Debug, Default)]
struct State {
    owners: HashMap<SessionId, Owner>,
    /// Open sessions and pending reservations per principal.
    counts: HashMap<Principal, usize>,
    /// Open sessions and pending reservations in total.
    total: usize,
}

/// The session manager of `/mcp` (see the module docs).
pub struct Sessions {
    inner: LocalSessionManager,
    limits: SessionLimits,
    state: Mutex<State>,
    /// Open sessions (not reservations): the `/metrics` gauge.
    open: Arc<AtomicUsize>,
}

/// A reserved session slot, consumed by `create_session`; released on drop otherwise.
pub struct Reservation {
    sessions: Arc<Sessions>,
    principal: Principal,
    taken: AtomicBool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.taken.load(Ordering::Acquire) {
            self.sessions.release(&self.principal);
        }
    }
}

tokio::task_local! {
    /// The reservation of the `initialize` request being served (see the module docs).
    pub static RESERVATION: Arc<Reservation>;
}

/// A session id as logs may show it: the first 8 hex digits of its SHA-256.
pub fn short(id: &str) -> String {
    Sha256::digest(id.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Sessions {
    /// `open` is the gauge the router's `/metrics` reads.
    pub fn new(limits: SessionLimits, open: Arc<AtomicUsize>) -> Sessions {
        let mut inner = LocalSessionManager::default();
        inner.session_config = {
            let mut c = SessionConfig::default();
            c.keep_alive = Some(limits.idle);
            c
        };
        Sessions {
            inner,
            limits,
            state: Mutex::new(State::default()),
            open,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a slot for a new session of `principal`, or says which limit is reached.
    pub fn reserve(
        self: &Arc<Self>,
        principal: Principal,
    ) -> Result<Arc<Reservation>, SessionRefused> {
        let expired = {
            let mut state = self.lock();
            let expired = self.take_expired(&mut state);
            let mine = state.counts.get(&principal).copied().unwrap_or(0);
            if mine >= self.limits.per_agent {
                drop(state);
                self.close_all(expired);
                return Err(SessionRefused::PerAgent {
                    agent: principal.agent.clone(),
                    limit: self.limits.per_agent,
                });
            }
            if state.total >= self.limits.total {
                drop(state);
                self.close_all(expired);
                return Err(SessionRefused::Total {
                    limit: self.limits.total,
                });
            }
            *state.counts.entry(principal.clone()).or_default() += 1;
            state.total += 1;
            expired
        };
        self.close_all(expired);
        Ok(Arc::new(Reservation {
            sessions: self.clone(),
            principal,
            taken: AtomicBool::new(false),
        }))
    }

    /// Removes the sessions past their lifetime from the books; returns them for closing.
    fn take_expired(&self, state: &mut State) -> Vec<SessionId> {
        let lifetime = self.limits.lifetime;
        let expired: Vec<SessionId> = state
            .owners
            .iter()
            .filter(|(_, o)| o.created.elapsed() >= lifetime)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            Self::forget(state, &self.open, id);
        }
        expired
    }

    /// Closes sessions already removed from the books (their workers end in the background).
    fn close_all(self: &Arc<Self>, ids: Vec<SessionId>) {
        for id in ids {
            tracing::info!(
                session = short(&id),
                "mcp: session closed: lifetime reached"
            );
            let sessions = self.clone();
            tokio::spawn(async move {
                let _ = sessions.inner.close_session(&id).await;
            });
        }
    }

    fn release(&self, principal: &Principal) {
        let mut state = self.lock();
        Self::decrement(&mut state, principal);
    }

    fn decrement(state: &mut State, principal: &Principal) {
        if let Some(n) = state.counts.get_mut(principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.counts.remove(principal);
            }
        }
        state.total = state.total.saturating_sub(1);
    }

    /// Drops `id` from the books (its slot is freed). False when it was not there.
    fn forget(state: &mut State, open: &AtomicUsize, id: &SessionId) -> bool {
        match state.owners.remove(id) {
            Some(owner) => {
                Self::decrement(state, &owner.principal);
                open.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Whether `caller` may use session `id`. A session past its lifetime is closed here.
    pub async fn check(&self, id: &str, caller: &Principal) -> Access {
        let id: SessionId = id.into();
        let expired = {
            let state = self.lock();
            match state.owners.get(&id) {
                Some(o) if &o.principal == caller => o.created.elapsed() >= self.limits.lifetime,
                _ => return Access::NotFound,
            }
        };
        if expired {
            tracing::info!(
                session = short(&id),
                "mcp: session closed: lifetime reached"
            );
            let _ = self.close_session(&id).await;
            return Access::NotFound;
        }
        Access::Owner
    }

    /// Open sessions.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        // Only a request that went through `reserve` may open a session.
        let Ok(reservation) = RESERVATION.try_with(Arc::clone) else {
            return Err(LocalSessionManagerError::SessionNotFound(
                "no session slot was reserved for this request".into(),
            ));
        };
        let (id, transport) = self.inner.create_session().await?;
        {
            let mut state = self.lock();
            reservation.taken.store(true, Ordering::Release);
            state.owners.insert(
                id.clone(),
                Owner {
                    principal: reservation.principal.clone(),
                    created: Instant::now(),
                },
            );
            self.open.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(
            agent = &*reservation.principal.agent,
            keyed = reservation.principal.keyed,
            session = short(&id),
            "mcp: session opened"
        );
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let forgotten = {
            let mut state = self.lock();
            Self::forget(&mut state, &self.open, id)
        };
        if forgotten {
            tracing::debug!(session = short(id), "mcp: session closed");
        }
        // rmcp logs a failed close with the whole id: log it here, by its hash, instead.
        if let Err(e) = self.inner.close_session(id).await {
            tracing::warn!(session = short(id), error = %e, "mcp: closing a session failed");
        }
        Ok(())
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }
}
