//! Counting prompt tokens: a real BPE tokenizer for OpenAI models (tiktoken-rs, which embeds its
//! ranks: nothing is downloaded), or the cheap chars/4 estimate.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;

use super::openai::ChatMessage;

/// How prompt tokens are counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Tokenizer {
    /// OpenAI's BPE (o200k_base for gpt-4o and later, cl100k_base for gpt-4 and gpt-3.5).
    #[default]
    Bpe,
    /// One token per 4 characters, rounded up: cheap, and close for English.
    Chars4,
}

fn o200k() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().expect("o200k_base ranks are embedded in tiktoken-rs"))
}

fn cl100k() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().expect("cl100k_base ranks are embedded in tiktoken-rs"))
}

impl Tokenizer {
    /// Loads the tables now, so the first request does not pay for it.
    pub fn warm_up(self, model: &str) {
        if self == Tokenizer::Bpe {
            let _ = role_counts(model);
        }
    }

    /// Tokens in `text` for `model`.
    pub fn count(self, model: &str, text: &str) -> u32 {
        match self {
            Tokenizer::Bpe => bpe_for(model).encode_ordinary(text).len() as u32,
            Tokenizer::Chars4 => (text.chars().count() as u32).div_ceil(4),
        }
    }
}

fn is_cl100k(model: &str) -> bool {
    model.starts_with("gpt-4-") || model == "gpt-4" || model.starts_with("gpt-3.5")
}

fn bpe_for(model: &str) -> &'static CoreBPE {
    if is_cl100k(model) { cl100k() } else { o200k() }
}

/// The roles of OpenAI's chat format: a handful of words in every message, so their BPE counts
/// are computed once per encoding rather than on every request.
const ROLES: [&str; 6] = ["system", "user", "assistant", "developer", "tool", "function"];

fn role_counts(model: &str) -> &'static [u32; ROLES.len()] {
    static O200K: OnceLock<[u32; ROLES.len()]> = OnceLock::new();
    static CL100K: OnceLock<[u32; ROLES.len()]> = OnceLock::new();
    let cell = if is_cl100k(model) { &CL100K } else { &O200K };
    cell.get_or_init(|| ROLES.map(|r| Tokenizer::Bpe.count(model, r)))
}

impl Tokenizer {
    /// Tokens in a message's `role`: the same as [`Tokenizer::count`], from a table for the
    /// usual roles.
    pub fn count_role(self, model: &str, role: &str) -> u32 {
        match (self, ROLES.iter().position(|r| *r == role)) {
            (Tokenizer::Bpe, Some(i)) => role_counts(model)[i],
            _ => self.count(model, role),
        }
    }
}

/// Prompt tokens of a chat request, as the OpenAI cookbook estimates them: 4 per message, the
/// tokens of its role, content and name (−1 when a name is present), and 2 for the reply primer
/// (`api_request_parallel_processor.py`).
pub fn prompt_tokens(tokenizer: Tokenizer, model: &str, messages: &[ChatMessage<'_>]) -> u32 {
    let mut n = 2u32;
    for m in messages {
        n += 4 + tokenizer.count_role(model, &m.role) + tokenizer.count(model, &m.content);
        if let Some(name) = &m.name {
            n += tokenizer.count(model, name).saturating_sub(1);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpe_counts_like_openai() {
        // "hello world" is 2 tokens in both encodings (tiktoken's own example).
        assert_eq!(Tokenizer::Bpe.count("gpt-4o-mini", "hello world"), 2);
        assert_eq!(Tokenizer::Bpe.count("gpt-4", "hello world"), 2);
        assert_eq!(Tokenizer::Chars4.count("gpt-4o", "hello world"), 3);
    }

    #[test]
    fn role_counts_from_the_table_equal_counting() {
        // The table is a cache, never an estimate: for every role in both encodings (and a role
        // outside the table) it gives what the tokenizer gives.
        for model in ["gpt-4o-mini", "gpt-4"] {
            for role in ROLES.iter().copied().chain(["narrator"]) {
                assert_eq!(
                    Tokenizer::Bpe.count_role(model, role),
                    Tokenizer::Bpe.count(model, role),
                    "{model} {role}"
                );
                assert_eq!(
                    Tokenizer::Chars4.count_role(model, role),
                    Tokenizer::Chars4.count(model, role)
                );
            }
        }
    }

    #[test]
    fn chat_overhead_follows_the_cookbook() {
        let msgs = vec![ChatMessage {
            role: "user".into(),
            content: "hello world".into(),
            name: None,
        }];
        // 2 primer + 4 per message + 1 ("user") + 2 ("hello world").
        assert_eq!(prompt_tokens(Tokenizer::Bpe, "gpt-4o", &msgs), 9);
    }
}
