//! `/pushrules/`: a user's push rules — the spec's defaults and their own — read, added,
//! removed, enabled and given actions.

use std::sync::Arc;

use axum::extract::State;
use ruma::UserId;
use ruma::api::client::push::{
    delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled, get_pushrules_all, get_pushrules_global_scope, set_pushrule,
    set_pushrule_actions, set_pushrule_enabled,
};
use ruma::push::{AnyPushRuleRef, RuleKind, Ruleset};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

fn not_found() -> Error {
    Error::not_found("There is no such push rule")
}

/// Changes a user's rules with `change` and stores them.
fn update(services: &Services, user: &UserId, change: impl FnOnce(&mut Ruleset) -> Result<()>) -> Result<()> {
    let mut rules = Ruleset::clone(&*services.push.rules(user)?);
    change(&mut rules)?;
    services.push.save_rules(user, &rules)
}

fn rule<'a>(rules: &'a Ruleset, kind: &RuleKind, rule_id: &str) -> Result<AnyPushRuleRef<'a>> {
    rules.get(kind.clone(), rule_id).ok_or_else(not_found)
}

/// `GET /_matrix/client/v3/pushrules/`
pub async fn get_pushrules_all(
    State(services): State<Arc<Services>>,
    req: Ruma<get_pushrules_all::v3::Request>,
) -> HandlerResult<get_pushrules_all::v3::Response> {
    Ok(RumaResponse(get_pushrules_all::v3::Response::new(Ruleset::clone(
        &*services.push.rules(req.user_id()?)?,
    ))))
}

/// `GET /_matrix/client/v3/pushrules/global/`
pub async fn get_pushrules_global_scope(
    State(services): State<Arc<Services>>,
    req: Ruma<get_pushrules_global_scope::v3::Request>,
) -> HandlerResult<get_pushrules_global_scope::v3::Response> {
    Ok(RumaResponse(get_pushrules_global_scope::v3::Response::new(Ruleset::clone(
        &*services.push.rules(req.user_id()?)?,
    ))))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn get_pushrule(
    State(services): State<Arc<Services>>,
    req: Ruma<get_pushrule::v3::Request>,
) -> HandlerResult<get_pushrule::v3::Response> {
    let rules = services.push.rules(req.user_id()?)?;
    let found = rule(&rules, &req.body.kind, &req.body.rule_id)?.to_owned();
    Ok(RumaResponse(get_pushrule::v3::Response::new(found.into())))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn set_pushrule(
    State(services): State<Arc<Services>>,
    req: Ruma<set_pushrule::v3::Request>,
) -> HandlerResult<set_pushrule::v3::Response> {
    let request = &req.body;
    update(&services, req.user_id()?, |rules| {
        rules
            .insert(request.rule.clone(), request.after.as_deref(), request.before.as_deref())
            .map_err(|e| Error::bad_request(format!("The push rule cannot be added: {e}")))
    })?;
    Ok(RumaResponse(set_pushrule::v3::Response::new()))
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn delete_pushrule(
    State(services): State<Arc<Services>>,
    req: Ruma<delete_pushrule::v3::Request>,
) -> HandlerResult<delete_pushrule::v3::Response> {
    let request = &req.body;
    update(&services, req.user_id()?, |rules| {
        rule(rules, &request.kind, &request.rule_id)?;
        rules
            .remove(request.kind.clone(), &request.rule_id)
            .map_err(|e| Error::bad_request(format!("The push rule cannot be removed: {e}")))
    })?;
    Ok(RumaResponse(delete_pushrule::v3::Response::new()))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub async fn get_pushrule_enabled(
    State(services): State<Arc<Services>>,
    req: Ruma<get_pushrule_enabled::v3::Request>,
) -> HandlerResult<get_pushrule_enabled::v3::Response> {
    let rules = services.push.rules(req.user_id()?)?;
    let enabled = rule(&rules, &req.body.kind, &req.body.rule_id)?.enabled();
    Ok(RumaResponse(get_pushrule_enabled::v3::Response::new(enabled)))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub async fn set_pushrule_enabled(
    State(services): State<Arc<Services>>,
    req: Ruma<set_pushrule_enabled::v3::Request>,
) -> HandlerResult<set_pushrule_enabled::v3::Response> {
    let request = &req.body;
    update(&services, req.user_id()?, |rules| {
        rules
            .set_enabled(request.kind.clone(), &request.rule_id, request.enabled)
            .map_err(|_| not_found())
    })?;
    Ok(RumaResponse(set_pushrule_enabled::v3::Response::new()))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub async fn get_pushrule_actions(
    State(services): State<Arc<Services>>,
    req: Ruma<get_pushrule_actions::v3::Request>,
) -> HandlerResult<get_pushrule_actions::v3::Response> {
    let rules = services.push.rules(req.user_id()?)?;
    let actions = rule(&rules, &req.body.kind, &req.body.rule_id)?.actions().to_vec();
    Ok(RumaResponse(get_pushrule_actions::v3::Response::new(actions)))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub async fn set_pushrule_actions(
    State(services): State<Arc<Services>>,
    req: Ruma<set_pushrule_actions::v3::Request>,
) -> HandlerResult<set_pushrule_actions::v3::Response> {
    let request = &req.body;
    update(&services, req.user_id()?, |rules| {
        rules
            .set_actions(request.kind.clone(), &request.rule_id, request.actions.clone())
            .map_err(|_| not_found())
    })?;
    Ok(RumaResponse(set_pushrule_actions::v3::Response::new()))
}
