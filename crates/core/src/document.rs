//! Reading the documents users hand us (run requests, rules documents, saved plans, Lambda
//! events) with every key in view, and with bounds on what a document may expand to.
//!
//! - A key given twice in one mapping, anywhere, is refused by its path. serde's `Value` and
//!   its maps keep the last one silently: `{"operation":"assign","operation":"revoke"}` would
//!   plan a revoke, `tags: {env: prod, env: dev}` would select the `dev` accounts.
//! - Bounds: the text's size, the nesting depth, and the nodes and text the document expands
//!   to. A YAML alias (`*name`) replays the node its anchor names, so a few kilobytes can
//!   stand for gigabytes; counting while the aliases are replayed refuses such a document
//!   after a bounded amount of work, before any typed decoding copies it.
//! - Deep nesting is refused from the text before a YAML parser sees it: libyaml's work per
//!   token grows with the flow depth (quadratic in all), and no document of ours nests deeply.
//!
//! Errors are `FanoutError::InvalidRequest` whose field is the offending key's path
//! (`targets.tags.env`, `rules[0].exclude[3]`), or `whole` for the document itself.

use crate::error::{printable, FanoutError, Result};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::{Cell, RefCell};
use std::fmt;

/// What a document may be and expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Size of the text.
    pub max_bytes: usize,
    /// Mappings and sequences inside one another.
    pub max_depth: usize,
    /// Nodes (scalars, mappings, sequences) once aliases are replayed.
    pub max_nodes: usize,
    /// Bytes of scalar text once aliases are replayed.
    pub max_expanded_bytes: usize,
}

/// Far above any real document (a rules document naming every account of a 7,000-account
/// organization in a dozen rules is ~1.5 MB and ~100,000 nodes), far below what hurts.
pub const LIMITS: Limits = Limits { max_bytes: 8 << 20, max_depth: 64, max_nodes: 2_000_000, max_expanded_bytes: 32 << 20 };

/// A JSON text as a value, refused on a duplicate key, past the limits or on a syntax error
/// (the message gives line and column). `whole` names the document in errors about no field.
pub fn json(text: &str, whole: &str) -> Result<Value> {
    check_size(text, whole)?;
    let reader = Reader::new(LIMITS, Duplicates::Refuse);
    let mut decoder = serde_json::Deserializer::from_str(text);
    let value = Node { reader: &reader }.deserialize(&mut decoder).and_then(|v| decoder.end().map(|()| v));
    value.map_err(|e| reader.error(whole, e.to_string()))
}

/// Checks a YAML text (or JSON, which is YAML) for duplicate keys and the limits, before a typed
/// decoder reads it. A syntax error is left to that decoder, which reports it in its own words.
pub fn check_yaml(text: &str, whole: &str) -> Result<()> {
    check_size(text, whole)?;
    check_flow_depth(text, LIMITS.max_depth, whole)?;
    let reader = Reader::new(LIMITS, Duplicates::Refuse);
    let read = Node { reader: &reader }.deserialize(serde_yaml_ng::Deserializer::from_str(text));
    match read {
        Ok(_) => Ok(()),
        Err(e) if reader.found.borrow().is_some() => Err(reader.error(whole, e.to_string())),
        // serde_yaml_ng's own bound on alias replays (100 per event) can come first; it has no
        // error kind to match, only this text.
        Err(e) if e.to_string().contains("repetition limit exceeded") => Err(reader.error(whole, expansion_refused(&LIMITS))),
        Err(_) => Ok(()),
    }
}

fn expansion_refused(limits: &Limits) -> String {
    format!(
        "a document that expands to at most {} nodes and {} MiB of text (YAML aliases `*name` repeat what their anchor names, and count each time)",
        limits.max_nodes,
        limits.max_expanded_bytes >> 20
    )
}

/// A YAML (or JSON) text as a value within the limits, the first of a twice-given key kept:
/// what an error message may consult (a rule's id, say) once `check_yaml` refused the text.
/// None past the limits or on a syntax error.
pub fn yaml_value_for_messages(text: &str) -> Option<Value> {
    check_size(text, "").ok()?;
    check_flow_depth(text, LIMITS.max_depth, "").ok()?;
    let reader = Reader::new(LIMITS, Duplicates::KeepFirst);
    Node { reader: &reader }.deserialize(serde_yaml_ng::Deserializer::from_str(text)).ok()
}

fn check_size(text: &str, whole: &str) -> Result<()> {
    if text.len() > LIMITS.max_bytes {
        return Err(FanoutError::invalid(
            whole,
            "",
            format!("a document of at most {} MiB: this one has {} bytes", LIMITS.max_bytes >> 20, text.len()),
        ));
    }
    Ok(())
}

/// Refuses text whose `[`/`{` open more than `max` deep. Counted over the raw text (inside
/// quotes and comments too), so it can only over-count: a real document nests a few levels.
fn check_flow_depth(text: &str, max: usize, whole: &str) -> Result<()> {
    let mut depth = 0usize;
    for (line, content) in text.lines().enumerate() {
        for b in content.bytes() {
            match b {
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => continue,
            }
            if depth > max {
                return Err(FanoutError::invalid(
                    whole,
                    "",
                    format!("at most {max} levels of nesting: `[` and `{{` open deeper at line {}", line + 1),
                ));
            }
        }
    }
    Ok(())
}

/// What the walk does with a key given twice in one mapping.
#[derive(Clone, Copy, PartialEq)]
enum Duplicates {
    Refuse,
    KeepFirst,
}

/// The walk's state: where it is, what it has counted, and the first problem it found.
struct Reader {
    limits: Limits,
    duplicates: Duplicates,
    path: RefCell<Vec<Step>>,
    depth: Cell<usize>,
    nodes: Cell<usize>,
    bytes: Cell<usize>,
    /// The path of the problem our own checks found (None: the decoder's own error).
    found: RefCell<Option<String>>,
}

enum Step {
    Key(String),
    Index(usize),
}

impl Reader {
    fn new(limits: Limits, duplicates: Duplicates) -> Reader {
        Reader { limits, duplicates, path: RefCell::new(Vec::new()), depth: Cell::new(0), nodes: Cell::new(0), bytes: Cell::new(0), found: RefCell::new(None) }
    }

    /// `targets.tags.env`, `rules[0].exclude[3]`; empty at the top.
    fn path(&self) -> String {
        let mut out = String::new();
        for step in self.path.borrow().iter() {
            match step {
                Step::Key(k) if out.is_empty() => out.push_str(k),
                Step::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// A problem of ours at the current path, as the decoder's error (it adds line and column).
    fn refuse<E: de::Error>(&self, message: String) -> E {
        *self.found.borrow_mut() = Some(self.path());
        E::custom(message)
    }

    /// One more node of `text_len` bytes, within the limits.
    fn count<E: de::Error>(&self, text_len: usize) -> std::result::Result<(), E> {
        self.nodes.set(self.nodes.get() + 1);
        self.bytes.set(self.bytes.get() + text_len);
        if self.nodes.get() > self.limits.max_nodes || self.bytes.get() > self.limits.max_expanded_bytes {
            return Err(self.refuse(expansion_refused(&self.limits)));
        }
        Ok(())
    }

    fn enter<E: de::Error>(&self) -> std::result::Result<(), E> {
        self.count(0)?;
        self.depth.set(self.depth.get() + 1);
        if self.depth.get() > self.limits.max_depth {
            return Err(self.refuse(format!("at most {} levels of nesting", self.limits.max_depth)));
        }
        Ok(())
    }

    fn leave(&self) {
        self.depth.set(self.depth.get() - 1);
    }

    /// The error for the caller: at the path of the problem, or where the decoder stopped.
    fn error(&self, whole: &str, message: String) -> FanoutError {
        let path = self.found.borrow().clone().unwrap_or_else(|| self.path());
        // serde_yaml_ng starts its messages with its own form of the path: the field says it.
        let message = match message.split_once(": ") {
            Some((head, rest)) if !path.is_empty() && head.trim_start_matches('.') == path => rest.to_string(),
            _ => message,
        };
        FanoutError::invalid(if path.is_empty() { whole.to_string() } else { path }, "", message)
    }
}

/// One node of the document, decoded into a `Value`.
struct Node<'r> {
    reader: &'r Reader,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON or YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<Value, E> {
        self.reader.count(0)?;
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Value, E> {
        self.reader.count(0)?;
        Ok(n.into())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Value, E> {
        self.reader.count(0)?;
        Ok(n.into())
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<Value, E> {
        self.reader.count(0)?;
        // YAML's .nan and .inf have no JSON form; the typed decoder refuses them where it matters.
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Value, E> {
        self.reader.count(s.len())?;
        Ok(Value::String(s.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Value, E> {
        self.reader.count(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> std::result::Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let reader = self.reader;
        reader.enter()?;
        let mut items = Vec::new();
        loop {
            reader.path.borrow_mut().push(Step::Index(items.len()));
            let Some(item) = seq.next_element_seed(Node { reader })? else {
                reader.path.borrow_mut().pop();
                break;
            };
            reader.path.borrow_mut().pop();
            items.push(item);
        }
        reader.leave();
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let reader = self.reader;
        reader.enter()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(Key { reader })? {
            reader.path.borrow_mut().push(Step::Key(key.clone()));
            let twice = object.contains_key(&key);
            if twice && reader.duplicates == Duplicates::Refuse {
                return Err(reader.refuse(format!(
                    "each key once: `{}` is given twice in the same mapping (a reader would keep one of them silently)",
                    printable(&key)
                )));
            }
            let value = map.next_value_seed(Node { reader })?;
            reader.path.borrow_mut().pop();
            if !twice {
                object.insert(key, value);
            }
        }
        reader.leave();
        Ok(Value::Object(object))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> std::result::Result<Value, A::Error> {
        Err(self.reader.refuse("plain values: YAML tags (`!name`) are not read here; remove the tag".into()))
    }
}

/// A mapping key as text (YAML allows numbers, booleans and null as keys too).
struct Key<'r> {
    reader: &'r Reader,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<String, E> {
        self.reader.count(s.len())?;
        Ok(s.to_string())
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<String, E> {
        self.visit_str(&b.to_string())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<String, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<String, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<String, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<String, E> {
        self.visit_str("null")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> std::result::Result<String, A::Error> {
        Err(self.reader.refuse("keys that are text: a sequence used as a key".into()))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> std::result::Result<String, A::Error> {
        Err(self.reader.refuse("keys that are text: a mapping used as a key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn refused(r: Result<impl fmt::Debug>) -> (String, String) {
        match r {
            Err(e @ FanoutError::InvalidRequest { .. }) => {
                let text = e.to_string();
                let FanoutError::InvalidRequest { field, .. } = e else { unreachable!() };
                (field, text)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_duplicate_key_is_refused_by_its_path_in_json() {
        let (field, text) = refused(json(r#"{"operation":"assign","operation":"revoke"}"#, "request"));
        assert_eq!(field, "operation");
        assert!(text.contains("given twice") && text.contains("line 1"), "{text}");
        let (field, _) = refused(json(r#"{"targets":{"tags":{"env":"prod","team":"a","env":"dev"}}}"#, "request"));
        assert_eq!(field, "targets.tags.env");
        let (field, _) = refused(json(r#"{"rules":[{"id":"a"},{"id":"b","id":"c"}]}"#, "rules document"));
        assert_eq!(field, "rules[1].id");
        // The same key in two different mappings is no duplicate.
        let v = json(r#"{"a":{"k":1},"b":{"k":2},"c":[{"k":3},{"k":4}]}"#, "request").unwrap();
        assert_eq!(v["c"][1]["k"], 4);
    }

    #[test]
    fn a_duplicate_key_is_refused_by_its_path_in_yaml() {
        let (field, text) = refused(check_yaml("version: 1\nrules:\n  - id: a\n    targets:\n      - tags: {env: prod, env: dev}\n", "rules document"));
        assert_eq!(field, "rules[0].targets[0].tags.env");
        assert!(text.contains("line 5"), "{text}");
        let (field, _) = refused(check_yaml("a: 1\nb: 2\na: 3\n", "rules document"));
        assert_eq!(field, "a");
        assert!(check_yaml("a: {k: 1}\nb: {k: 1}\n", "rules document").is_ok());
        // A syntax error is left to the typed decoder, which names line and column itself.
        assert!(check_yaml("a: [1, 2\n", "rules document").is_ok());
    }

    #[test]
    fn a_syntax_error_in_json_gives_its_place() {
        let (field, text) = refused(json("{\"operation\": \"assign\",\n \"targets\": {\"filter\": }}", "request"));
        assert_eq!(field, "targets.filter");
        assert!(text.contains("line 2"), "{text}");
        let (field, _) = refused(json("{} trailing", "request"));
        assert_eq!(field, "request");
    }

    #[test]
    fn alias_amplification_is_refused_quickly() {
        // One 1 MB string, named 10,000 times: 10 GB once expanded.
        let mut text = format!("big: &big \"{}\"\nexclude:\n", "x".repeat(1 << 20));
        for _ in 0..10_000 {
            text.push_str("  - *big\n");
        }
        let started = Instant::now();
        let (field, text) = refused(check_yaml(&text, "rules document"));
        assert!(started.elapsed().as_secs_f64() < 2.0, "took {:?}", started.elapsed());
        assert!(field.starts_with("exclude["), "{field}");
        assert!(text.contains("aliases"), "{text}");
        // The classic: nine levels of ten aliases each.
        let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let started = Instant::now();
        let (_, text) = refused(check_yaml(&laughs, "rules document"));
        assert!(started.elapsed().as_secs_f64() < 1.0, "took {:?}", started.elapsed());
        assert!(text.contains("nodes"), "{text}");
    }

    #[test]
    fn deep_nesting_is_refused_quickly() {
        for text in ["[".repeat(100_000), "{a: ".repeat(100_000)] {
            let started = Instant::now();
            let (field, message) = refused(check_yaml(&text, "rules document"));
            assert!(started.elapsed().as_secs_f64() < 1.0, "took {:?}", started.elapsed());
            assert_eq!(field, "rules document");
            assert!(message.contains("levels of nesting"), "{message}");
        }
        // Block style nests without brackets too (`- - - x`: one sequence in another).
        for text in [format!("{}x", "- ".repeat(1_000_000)), format!("{}x", "? ".repeat(1_000_000))] {
            let (_, message) = refused(check_yaml(&text, "rules document"));
            assert!(message.contains("levels of nesting") || message.contains("keys that are text"), "{message}");
        }
        // Block style nests without brackets: the walk counts its depth.
        let mut block = String::new();
        for level in 0..80 {
            block.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
        }
        let (_, message) = refused(check_yaml(&block, "rules document"));
        assert!(message.contains("levels of nesting"), "{message}");
        let (_, message) = refused(json(&format!("{}{}", "[".repeat(100), "]".repeat(100)), "request"));
        assert!(message.contains("nesting") || message.contains("recursion"), "{message}");
        assert!(json(&format!("{}{}", "[".repeat(60), "]".repeat(60)), "request").is_ok());
    }

    #[test]
    fn an_oversized_document_is_refused_before_it_is_read() {
        let text = format!("\"{}\"", "x".repeat(LIMITS.max_bytes));
        let (field, message) = refused(json(&text, "--request"));
        assert_eq!(field, "--request");
        assert!(message.contains("MiB"), "{message}");
    }

    #[test]
    fn tags_and_non_text_keys() {
        let (field, _) = refused(check_yaml("a: !custom 1\n", "rules document"));
        assert_eq!(field, "a");
        assert!(check_yaml("1: one\ntrue: yes\n", "rules document").is_ok());
        let (_, message) = refused(check_yaml("1: a\n\"1\": b\n", "rules document"));
        assert!(message.contains("twice"), "{message}");
    }
}
