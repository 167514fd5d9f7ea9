//! Every placement rule the engine honours and where it comes from (tags, pools, HA rules), what
//! the rule engine found wrong with them, and why guests that could help stay where they are.

use super::{Ctx, Tab};
use crate::rule_rows;
use leptos::prelude::*;
use shared::rules::{compile, RuleConfig, Severity};

#[component]
pub fn Rules() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    // Only while shown: compiling thousands of guests' tags on every refresh of a hidden tab is waste.
    let set = Memo::new(move |_| {
        if ctx.tab.get() != Tab::Rules {
            return None;
        }
        ctx.cluster.with(|c| {
            c.as_ref().map(|c| {
                let set = compile(&c.snapshot, &RuleConfig::default());
                (rule_rows::rows(&c.snapshot, &set.constraints), set.diagnostics)
            })
        })
    });
    let constraints = move || {
        set.with(|s| {
            let (rows, _) = s.as_ref()?;
            if rows.is_empty() {
                return Some(view! { <p class="pvrb-muted">"No placement rules: no ProxLB/ProxBalance tags and no PVE HA rules."</p> }.into_any());
            }
            let rows = rows
                .iter()
                .map(|r| {
                    let strength = if r.hard { "hard" } else { "soft" };
                    view! {
                        <tr>
                            <td>{r.what}</td>
                            <td>{r.words.clone()}</td>
                            <td><span class=format!("pvrb-badge pvrb-strength-{strength}")>{strength}</span></td>
                            <td>{r.sources.join("; ")}</td>
                        </tr>
                    }
                })
                .collect_view();
            Some(view! {
                <div class="pvrb-scroll">
                    <table id="rule-constraints" class="pvrb-grid">
                        <thead><tr><th>"Rule"</th><th>"What it demands"</th><th>"Strength"</th><th>"From"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
            }.into_any())
        })
    };
    let diagnostics = move || {
        let mut all = set.with(|s| s.as_ref().map(|(_, d)| d.clone()).unwrap_or_default());
        // The last plan's diagnostics also cover the service's configuration (pools, lists).
        ctx.last_plan.with(|p| {
            for d in p.iter().flat_map(|p| &p.diagnostics) {
                if !all.contains(d) {
                    all.push(d.clone());
                }
            }
        });
        if all.is_empty() {
            return view! { <p class="pvrb-ok" id="rule-diagnostics-none">"No conflicts or unreadable rules."</p> }.into_any();
        }
        let rows = all
            .iter()
            .map(|d| {
                let sev = match d.severity {
                    Severity::Info => "info",
                    Severity::Warning => "warning",
                    Severity::Error => "error",
                };
                view! { <li><span class=format!("pvrb-badge pvrb-sev-{sev}")>{sev}</span> " " {d.message.clone()} <span class="pvrb-muted">{format!(" — {}", d.source)}</span></li> }
            })
            .collect_view();
        view! { <ul id="rule-diagnostics" class="pvrb-notes">{rows}</ul> }.into_any()
    };
    let why_not = move || {
        ctx.last_plan.with(|p| match p {
            None => view! { <p class="pvrb-muted">"Compute or simulate a plan (Balance) to see why guests stay."</p> }.into_any(),
            Some(p) if p.why_not.is_empty() => view! { <p class="pvrb-muted">"The last plan left no guest behind that could have helped."</p> }.into_any(),
            Some(p) => {
                let rows = p
                    .why_not
                    .iter()
                    .map(|w| view! { <tr><td class="pvrb-num">{w.vmid}</td><td>{w.name.clone()}</td><td>{w.node.clone()}</td><td>{w.reason.clone()}</td></tr> })
                    .collect_view();
                view! {
                    <div class="pvrb-scroll">
                        <table id="why-not" class="pvrb-grid">
                            <thead><tr><th class="pvrb-num">"VMID"</th><th>"Name"</th><th>"Node"</th><th>"Why it stays"</th></tr></thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                }.into_any()
            }
        })
    };
    view! {
        <h4>"Placement rules"</h4>
        <p class="pvrb-muted">"From guest tags and PVE HA rules. Rules in the service's configuration (pools, ignore and maintenance lists) apply to plans the service computes; their findings appear under Diagnostics once a plan is computed."</p>
        {constraints}
        <h4>"Diagnostics"</h4>
        {diagnostics}
        <h4>"Why these guests stay"</h4>
        {why_not}
    }
}
