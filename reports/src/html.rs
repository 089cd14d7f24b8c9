//! `report.html`: one self-contained page (no network, no external scripts or fonts) with the
//! scenario, the comparison table and the charts as inline SVG.

use std::fmt::Write;

use sim::ReportFile;

use crate::charts;
use crate::error::ReportError;
use crate::palette::css;
use crate::table::secs;

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1320px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.lede{color:#555;margin-top:0}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{color:#666}dd{margin:0}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.8rem;width:100%}th,td{padding:.3rem .4rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}th{white-space:normal;vertical-align:bottom}
th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.4rem;vertical-align:middle}
figure.chart{margin:1.5rem 0}figure.chart svg{width:100%;height:auto}figcaption{font-size:.85rem;color:#555}footer{margin-top:3rem;color:#888;font-size:.8rem}";

/// Marks each chart with whether it drew anything beyond its background, for tests and for a
/// reader's browser console; no external code, no network.
const SELF_CHECK: &str = "(function(){var figs=document.querySelectorAll('figure.chart'),drawn=0,repeated=0,empty=0,wide=0;
figs.forEach(function(f){var ok=false;f.querySelectorAll('svg polyline, svg path, svg circle, svg rect').forEach(function(e,i){
if(e.tagName==='rect'&&i===0)return;var b=e.getBBox();if(b.width>0||b.height>0)ok=true;});f.setAttribute('data-plotted',ok?'yes':'no');if(ok)drawn++;
var byX={},byY={};f.querySelectorAll('svg text').forEach(function(t){var x=t.getAttribute('x'),y=t.getAttribute('y');
(byX[x]=byX[x]||[]).push(t.textContent);(byY[y]=byY[y]||[]).push(t.textContent);});
var rep=false;[byX,byY].forEach(function(g){for(var k in g){var a=g[k];if(a.length>=3&&new Set(a).size<a.length)rep=true;}});
if(rep){f.setAttribute('data-repeated-labels','yes');repeated++;}
var n=parseInt(f.getAttribute('data-slots')||'0');if(n>0){var l=1e9,r=-1e9;f.querySelectorAll('svg line').forEach(function(e){
if(e.getAttribute('y1')===e.getAttribute('y2')){l=Math.min(l,+e.getAttribute('x1'));r=Math.max(r,+e.getAttribute('x2'));}});
var xs=null;for(var k in byY){if(byY[k].length===n){xs=[];f.querySelectorAll('svg text').forEach(function(t){if(t.getAttribute('y')===k)xs.push(+t.getAttribute('x'));});}}
var d=(r-l)/n,bad=!xs;if(xs){xs.sort(function(a,b){return a-b;});xs.forEach(function(x,i){if(Math.abs(x-(l+d*(i+0.5)))>d/4)bad=true;});}
if(bad){f.setAttribute('data-empty-slot','yes');empty++;}}});
document.querySelectorAll('table').forEach(function(t){if(t.scrollWidth>t.parentElement.clientWidth+1)wide++;});
var b=document.body;b.setAttribute('data-charts-total',figs.length);b.setAttribute('data-charts-drawn',drawn);
b.setAttribute('data-repeated-labels',repeated);b.setAttribute('data-empty-slots',empty);b.setAttribute('data-wide-tables',wide);})();";

/// The page.
pub fn render(report: &ReportFile) -> Result<String, ReportError> {
    let charts = charts::all(report)?;
    let s = &report.scenario;
    let mut h = String::with_capacity(64 * 1024 + charts.iter().map(|c| c.svg.len()).sum::<usize>());
    let w = &mut h;
    let title = match &report.sweep {
        Some(sw) => format!("orchbench sweep: {} over {}", s.name, sw.param),
        None => format!("orchbench report: {}", s.name),
    };
    wr(
        w,
        format_args!("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"),
    );
    wr(
        w,
        format_args!("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"),
    );
    wr(
        w,
        format_args!("<title>{}</title><style>{STYLE}</style></head><body>\n", escape(&title)),
    );
    wr(
        w,
        format_args!(
            "<h1>{}</h1><p class=\"lede\">{}</p>\n",
            escape(&title),
            escape(&s.description)
        ),
    );
    wr(w, format_args!("<h2>Scenario</h2><dl>"));
    let limit = |v: Option<u64>| v.map_or("none".to_owned(), |v| v.to_string());
    for (k, v) in [
        ("seed", s.seed.to_string()),
        (
            "workload",
            format!(
                "{} files, {} chunks, {} users, max_tokens {}",
                s.files, s.chunks_total, s.users, s.max_tokens
            ),
        ),
        (
            "provider",
            format!(
                "{} ({} limits): TPM {}, RPM {}",
                s.model,
                s.profile,
                limit(s.tpm),
                limit(s.rpm)
            ),
        ),
        ("results stored", format!("{:?}", s.results).to_lowercase()),
        (
            "parameters",
            format!(
                "max-parallelism {}, target-tpm {}, throttle-threshold {}",
                s.params.max_parallelism, s.params.target_tpm, s.params.throttle_threshold.0
            ),
        ),
    ] {
        wr(w, format_args!("<dt>{k}</dt><dd>{}</dd>", escape(&v)));
    }
    if let Some(sw) = &report.sweep {
        let values: Vec<String> = sw.values.iter().map(|v| v.to_string()).collect();
        wr(
            w,
            format_args!(
                "<dt>swept</dt><dd>{}: {}</dd>",
                escape(&sw.param),
                escape(&values.join(", "))
            ),
        );
    }
    if !s.timeline.is_empty() {
        let items: Vec<String> = s
            .timeline
            .iter()
            .map(|t| format!("{}: {}", secs(t.at_s), escape(&action_text(&t.action))))
            .collect();
        wr(w, format_args!("<dt>timeline</dt><dd>{}</dd>", items.join("<br>")));
    }
    wr(w, format_args!("</dl>\n<h2>Comparison</h2>\n"));
    table(w, report);
    if let Some((head, body)) = crate::table::figures(report) {
        wr(
            w,
            format_args!(
                "<h2>Strategy figures</h2>\n<p>What each design reports about itself (executions, transitions, Lambda invocations and cold starts, throttles…) and what its orchestration cost, by unit.</p>\n"
            ),
        );
        w.push_str("<div class=\"scroll\"><table><thead><tr>");
        for h in &head {
            wr(w, format_args!("<th>{}</th>", escape(h)));
        }
        w.push_str("</tr></thead><tbody>\n");
        for (name, cells) in body {
            wr(w, format_args!("<tr><td>{}</td>", escape(&name)));
            for c in cells {
                wr(w, format_args!("<td>{}</td>", escape(&c)));
            }
            w.push_str("</tr>\n");
        }
        w.push_str("</tbody></table></div>\n");
    }
    wr(w, format_args!("<h2>Charts</h2>\n"));
    for c in &charts {
        wr(
            w,
            format_args!(
                "<figure class=\"chart\" id=\"chart-{}\"{}><figcaption>{}</figcaption>\n",
                c.id,
                c.slots.map_or(String::new(), |n| format!(" data-slots=\"{n}\"")),
                escape(c.explanation())
            ),
        );
        // The SVG document's XML declaration is not valid inside HTML; keep only the <svg> element.
        let svg = c.svg.find("<svg").map_or(c.svg.as_str(), |i| &c.svg[i..]);
        w.push_str(svg);
        w.push_str("</figure>\n");
    }
    wr(
        w,
        format_args!(
            "<footer>Generated by orchbench {} from report.json (schema {}).</footer>\n",
            env!("CARGO_PKG_VERSION"),
            report.schema_version
        ),
    );
    wr(w, format_args!("<script>{SELF_CHECK}</script>\n</body></html>\n"));
    Ok(h)
}

/// A timeline action as a reader writes it: `outage for 2m, status 503`, not its JSON.
fn action_text(action: &serde_json::Value) -> String {
    let value = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match action.as_object() {
        Some(map) => map
            .iter()
            .map(|(kind, args)| match args.as_object() {
                Some(args) => {
                    let parts: Vec<String> = args.iter().map(|(k, v)| format!("{k} {}", value(v))).collect();
                    format!("{kind} {}", parts.join(", "))
                }
                None => format!("{kind} {}", value(args)),
            })
            .collect::<Vec<_>>()
            .join("; "),
        None => value(action),
    }
}

fn wr(w: &mut String, args: std::fmt::Arguments<'_>) {
    w.write_fmt(args).expect("writing to a String cannot fail");
}

fn table(w: &mut String, report: &ReportFile) {
    let (head, body) = crate::table::rows(report);
    w.push_str("<div class=\"scroll\"><table><thead><tr>");
    for h in head {
        wr(w, format_args!("<th>{}</th>", escape(h)));
    }
    w.push_str("</tr></thead><tbody>\n");
    for (run, (label, cells)) in report.runs.iter().zip(body) {
        let swatch = css(&run.strategy);
        wr(
            w,
            format_args!(
                "<tr><td><span class=\"swatch\" style=\"background:{swatch}\"></span>{}</td>",
                escape(&label)
            ),
        );
        for c in cells {
            wr(w, format_args!("<td>{}</td>", escape(&c)));
        }
        w.push_str("</tr>\n");
    }
    w.push_str("</tbody></table></div>\n");
}
