//! The component's generic face (`describe`, `call`): decode the context, keep the store
//! open across calls of a warm instance, run the action, convert the answer.

use backlog_core::actions::{self, Ctx};
use backlog_core::ids::Entropy;
use backlog_core::policy::Policy;
use backlog_core::store::BacklogStore;
use backlog_core::{Error, ErrorCode, schema};
use std::rc::Rc;

use serde_json::Value;

use crate::{reports, store};

use crate::bindings::backlog_bridge::tool::types::{CallContext, ErrorCode as WitCode, ToolError};
use crate::bindings::exports::backlog_bridge::tool::tool::{
    ActionInfo, Guest as ToolGuest, ToolInfo,
};

/// The component.
pub struct Component;

impl ToolGuest for Component {
    fn describe() -> ToolInfo {
        ToolInfo {
            name: schema::TOOL_NAME.into(),
            description: schema::TOOL_DESCRIPTION.into(),
            actions: schema::actions()
                .into_iter()
                .map(|a| ActionInfo {
                    name: a.name.into(),
                    description: a.description.into(),
                    params_schema: a.schema.to_string(),
                })
                .collect(),
        }
    }

    fn call(action: String, params: String, context: CallContext) -> Result<String, ToolError> {
        let params: Value = serde_json::from_str(&params)
            .map_err(|e| Error::invalid_input(format!("params are not valid JSON: {e}")))
            .map_err(to_wit)?;
        run_with(&context, |store, ctx| {
            actions::execute_text(store, &action, &params, ctx)
        })
    }
}

/// Runs one action against the store the context names.
pub(crate) fn run(action: &str, params: &Value, context: &CallContext) -> Result<Value, ToolError> {
    run_with(context, |store, ctx| {
        actions::execute(store, action, params, ctx)
    })
}

/// Runs `f` with the store and the action context the call context names.
fn run_with<T>(
    context: &CallContext,
    f: impl FnOnce(&mut dyn BacklogStore, &mut Ctx<'_>) -> Result<T, Error>,
) -> Result<T, ToolError> {
    let (config, policy) = decoded(context.config.as_deref()).map_err(to_wit)?;
    let now = backlog_core::time::parse_ts(&context.now)
        .ok_or_else(|| Error::internal(format!("host sent an invalid `now`: {}", context.now)))
        .map_err(to_wit)?;
    let mut reports = config.reports_dir.as_deref().map(reports::FsReports::new);
    store::with_store(&config, &context.now, |store| {
        let mut entropy = WasiEntropy;
        let reserved_keys = config
            .entitlements
            .iter()
            .any(|e| e == actions::RESERVED_KEYS_ENTITLEMENT);
        let mut ctx =
            Ctx::new(&context.actor, now, &policy, &mut entropy).with_reserved_keys(reserved_keys);
        if let Some(r) = reports.as_mut() {
            ctx = ctx.with_reports(r);
        }
        f(store, &mut ctx)
    })
    .map_err(to_wit)
}

/// The context's `config` as this instance decoded it last: the text, the store config and
/// the policy.
type Decoded = (String, Rc<store::Config>, Rc<Policy>);

thread_local! {
    /// The config decoded from the text the host sent last. The host sends the text on an
    /// instance's first call and when it changes, `none` otherwise (`call-context`), so a
    /// warm instance decodes it — JSON, policy and all — once, not per call.
    static DECODED: std::cell::RefCell<Option<Decoded>> = const { std::cell::RefCell::new(None) };
}

/// The store config and policy of `text` (the call context's `config`; `None`: the text
/// this instance was sent last), decoded once per distinct text.
fn decoded(text: Option<&str>) -> Result<(Rc<store::Config>, Rc<Policy>), Error> {
    DECODED.with(|cell| {
        let mut slot = cell.borrow_mut();
        let text = match (text, slot.as_ref()) {
            (None, Some((_, config, policy))) => return Ok((config.clone(), policy.clone())),
            (None, None) => {
                return Err(Error::internal(
                    "the host sent no config and this instance keeps none (never sent one, or the last did not decode)",
                ));
            }
            (Some(text), Some((cached, config, policy))) if same_text(cached, text) => {
                return Ok((config.clone(), policy.clone()));
            }
            (Some(text), _) => text,
        };
        // A text that does not decode leaves none kept: a `none` after it is an error too.
        *slot = None;
        let config = Rc::new(store::Config::parse(text)?);
        let policy = policy(config.policy.as_deref())?;
        *slot = Some((text.to_owned(), config.clone(), policy.clone()));
        Ok((config, policy))
    })
}

/// `a == b`, eight bytes a step. Why: `==` on strings is wasi-libc's `memcmp` here, a loop
/// over single bytes, and the config compared on every call is kilobytes long (it was 8 % of
/// a warm `get` inside the guest).
fn same_text(a: &str, b: &str) -> bool {
    let ((a, a_tail), (b, b_tail)) = (a.as_bytes().as_chunks::<8>(), b.as_bytes().as_chunks::<8>());
    a.len() == b.len()
        && a_tail == b_tail
        && a.iter()
            .zip(b)
            .all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y))
}

thread_local! {
    /// The policy parsed from the text the host sent last; a warm instance reuses it.
    static POLICY: std::cell::RefCell<Option<(String, std::rc::Rc<Policy>)>> =
        const { std::cell::RefCell::new(None) };
}

/// The policy of this call (the host's resolved policy, or a document merged over the
/// defaults), parsed once per distinct text.
fn policy(text: Option<&str>) -> Result<std::rc::Rc<Policy>, Error> {
    // No document: the built-in policy (`{}` merges nothing over it).
    let text = text.unwrap_or("{}");
    POLICY.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some((cached, policy)) = slot.as_ref()
            && cached == text
        {
            return Ok(policy.clone());
        }
        // The host sends the resolved policy (every key): read as is. A document to merge
        // over the defaults (an older host) is read the slow way.
        let policy = std::rc::Rc::new(
            Policy::from_resolved_json(text)
                .or_else(|_| Policy::from_json_str(text))
                .map_err(|e| Error::internal(format!("host sent an invalid policy: {e}")))?,
        );
        *slot = Some((text.to_owned(), policy.clone()));
        Ok(policy)
    })
}

/// Randomness from the host's `wasi:random`.
struct WasiEntropy;

impl Entropy for WasiEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        if getrandom::fill(buf).is_err() {
            // wasi:random cannot fail; keep ids distinct even if it somehow did.
            for (i, b) in buf.iter_mut().enumerate() {
                *b = b.wrapping_add(i as u8).wrapping_mul(31);
            }
        }
    }
}

pub(crate) fn to_wit(e: Error) -> ToolError {
    let code = backlog_core::map_error_code!(e.code, ErrorCode => WitCode);
    ToolError {
        code,
        message: e.message,
    }
}
