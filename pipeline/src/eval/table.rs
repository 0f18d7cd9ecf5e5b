//! The study's table, as `scened eval` prints it: one markdown row per model.

use super::Row;

/// Four decimals as the study prints them; below 0.001 (top-1 well under 96 %: the score
/// halves with every half point missing) four significant digits.
fn score_text(score: f64) -> String {
    if score >= 1e-3 {
        format!("{score:.4}")
    } else {
        format!("{score:.3e}")
    }
}

/// The study's table layout, one row per model, in markdown.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| model | size (MB) | images | top-1 (%) | top-3 (%) | infer s/frame mean | p50 | p99 \
         | end-to-end s/frame p50 | peak RSS (MB) | score |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let na = |v: Option<f64>, decimals: usize| {
        v.map_or_else(|| "N/A".to_owned(), |v| format!("{v:.decimals$}"))
    };
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.1} | {} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.0} | {} |\n",
            r.model.file_name().unwrap_or_default().to_string_lossy(),
            r.size_mb,
            r.images,
            na(r.top1, 1),
            na(r.top3, 1),
            r.infer_s_mean,
            r.infer_s_p50,
            r.infer_s_p99,
            r.e2e_s_p50,
            r.peak_rss_mb,
            r.score.map_or_else(|| "N/A".to_owned(), score_text),
        ));
    }
    out
}
