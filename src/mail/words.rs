//! Function words of English, French and Spanish: the words that say nothing about what a
//! mail is about. Shared by the Help Center's suggestions ([`crate::kb::suggest`]) and the
//! incident similarity ([`crate::tickets::similar`]), which each add the words of their own
//! that carry no evidence for them. Lower-case, as the callers fold their words.

/// Function words and the politeness of any mail, in the three languages supportd reads.
#[rustfmt::skip]
pub const FUNCTION_WORDS: &[&str] = &[
    "the", "and", "for", "are", "but", "not", "you", "your", "all", "any", "can", "had", "her",
    "was", "one", "our", "out", "has", "have", "him", "his", "how", "its", "may", "new", "now",
    "see", "who", "did", "get", "got", "let", "say", "she", "too", "use", "that", "this", "with",
    "from", "they", "them", "then", "than", "what", "when", "will", "would", "there", "their",
    "been", "were", "which", "while", "could", "should", "about", "into", "just", "like", "some",
    "also", "only", "over", "such", "very", "much", "more", "most", "other", "these", "those",
    "here", "where", "does", "doing", "done", "each", "after", "before", "again", "because",
    "since", "being", "both", "off", "own", "same", "why", "yes", "yet", "still", "even", "well",
    "back", "need", "needs", "know", "think", "please", "thanks", "thank", "hello", "hi", "dear",
    "regards", "best", "team", "support", "help", "issue", "problem", "today", "yesterday",
    "morning", "afternoon", "time", "way", "someone", "anyone", "something", "anything",
    "everyone", "everything", "there", "cheers", "kind", "able", "can't", "asap", "ticket",
    "email", "mail", "sent", "send", "possible", "les", "des", "une", "est", "pour", "pas",
    "que", "qui", "dans", "sur", "avec", "nous", "vous", "mais", "plus", "cette", "ces",
    "bonjour", "merci", "cordialement", "votre", "notre", "depuis", "une", "sont", "los", "las",
    "del", "por", "para", "con", "una", "que", "como", "pero", "esta", "hola", "gracias",
    "saludos", "nuestro", "nuestra", "desde", "está",
];

/// Whether `word` (lower-case) is one of [`FUNCTION_WORDS`] or of `extra`.
pub fn is_common(word: &str, extra: &[&str]) -> bool {
    FUNCTION_WORDS.contains(&word) || extra.contains(&word)
}
