//! `GET /apisix/admin/<resource>`: the list envelope with APISIX's `page`, `page_size`, `name`,
//! `label` and `filter` arguments.

use axum::http::StatusCode;
use axum::response::Response;
use regex::Regex;
use serde_json::{json, Value};
use sg_model::Kind;
use sg_store::Entry;

use crate::crud::{item, store_error};
use crate::{reply, AdminState, QueryArgs};

/// Query arguments of a list request.
#[derive(Default)]
struct ListArgs {
    page: Option<String>,
    page_size: Option<String>,
    name: Option<String>,
    label: Option<String>,
    filter: Vec<(String, String)>,
}

impl ListArgs {
    /// A repeated argument counts once, with its last value.
    fn parse(query: &QueryArgs) -> Self {
        let mut args = ListArgs::default();
        for (name, value) in query {
            match name.as_str() {
                "page" => args.page = Some(value.clone()),
                "page_size" => args.page_size = Some(value.clone()),
                "name" => args.name = Some(value.clone()),
                "label" => args.label = Some(value.clone()),
                "filter" => args.filter = filter_pairs(value),
                _ => {}
            }
        }
        args
    }
}

/// `filter` holds a query string of its own.
fn filter_pairs(filter: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(filter.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

fn keep(kind: Kind, args: &ListArgs, name_re: Option<&Regex>, entry: &Entry) -> bool {
    let value = &entry.value;
    if let Some(re) = name_re {
        if !value
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| re.is_match(n))
        {
            return false;
        }
    }
    if let Some(label) = &args.label {
        if value.get("labels").and_then(|l| l.get(label)).is_none() {
            return false;
        }
    }
    if kind == Kind::StreamRoute {
        for (field, wanted) in &args.filter {
            if field == "service_id" || field == "upstream_id" {
                let stored = value.get(field).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                if stored.as_deref() != Some(wanted.as_str()) {
                    return false;
                }
            }
        }
    }
    true
}

pub async fn list(state: &AdminState, kind: Kind, query: &QueryArgs) -> Response {
    let args = ListArgs::parse(query);
    let paging = match (&args.page, &args.page_size) {
        (Some(page), Some(size)) => match (page.parse::<usize>(), size.parse::<usize>()) {
            (Ok(page), Ok(size)) => {
                if !(10..=500).contains(&size) {
                    return reply::raw(
                        StatusCode::BAD_REQUEST,
                        "page_size must be between 10 and 500",
                    );
                }
                Some((page.max(1), size))
            }
            _ => None,
        },
        _ => None,
    };
    let name_re = match args.name.as_deref().map(Regex::new).transpose() {
        Ok(re) => re,
        Err(_) => {
            return reply::bad_request("invalid argument name: not a valid regular expression")
        }
    };
    let mut entries = match state.store.list(kind.dir()).await {
        Ok(entries) => entries,
        Err(e) => return store_error(e),
    };
    entries.retain(|entry| keep(kind, &args, name_re.as_ref(), entry));
    let total = entries.len();
    if let Some((page, size)) = paging {
        entries.sort_by_key(|e| e.create_revision);
        entries = entries
            .into_iter()
            .skip((page - 1) * size)
            .take(size)
            .collect();
    }
    let items: Vec<Value> = entries
        .into_iter()
        .map(|entry| item(state, kind, entry))
        .collect();
    reply::json(StatusCode::OK, &json!({"list": items, "total": total}))
}
