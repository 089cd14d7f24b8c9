//! The scenarios that ship inside the binary (the files under `scenarios/`).

/// (name, TOML text) of every built-in scenario, in the order `orchbench scenarios` lists them.
pub const BUILTIN: &[(&str, &str)] = &[
    ("baseline", include_str!("../scenarios/baseline.toml")),
    ("tpm-squeeze", include_str!("../scenarios/tpm-squeeze.toml")),
    ("rpm-squeeze", include_str!("../scenarios/rpm-squeeze.toml")),
    ("tpm-cut", include_str!("../scenarios/tpm-cut.toml")),
    ("outage", include_str!("../scenarios/outage.toml")),
    ("cancel", include_str!("../scenarios/cancel.toml")),
    ("tenants", include_str!("../scenarios/tenants.toml")),
    ("multi-tenant", include_str!("../scenarios/multi-tenant.toml")),
    ("burst", include_str!("../scenarios/burst.toml")),
    ("crash-resume", include_str!("../scenarios/crash-resume.toml")),
    ("azure", include_str!("../scenarios/azure.toml")),
    ("million", include_str!("../scenarios/million.toml")),
];

/// The text of a built-in scenario.
pub fn get(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
