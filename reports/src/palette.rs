//! One colour per strategy, the same in every chart and every report.

use plotters::style::RGBColor;

/// Known strategies get fixed colours (Tableau 10); others a stable pick from the rest.
pub fn colour(strategy: &str) -> RGBColor {
    const KNOWN: [(&str, RGBColor); 5] = [
        ("fixed", RGBColor(31, 119, 180)),
        ("stepfn", RGBColor(255, 127, 14)),
        ("sqs", RGBColor(44, 160, 44)),
        ("adaptive", RGBColor(214, 39, 40)),
        ("cookbook", RGBColor(148, 103, 189)),
    ];
    const OTHERS: [RGBColor; 5] = [
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    if let Some((_, c)) = KNOWN.iter().find(|(n, _)| *n == strategy) {
        return *c;
    }
    // FNV-1a: stable across runs and platforms.
    let h = strategy.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    OTHERS[(h % OTHERS.len() as u64) as usize]
}

/// The colour as CSS (`#rrggbb`).
pub fn css(strategy: &str) -> String {
    let RGBColor(r, g, b) = colour(strategy);
    format!("#{r:02x}{g:02x}{b:02x}")
}
