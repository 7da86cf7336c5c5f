//! Property tests: the YAML → model decoding never panics, whatever the input, and every
//! problem it reports is one line that names the file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Map, Value};

fn assert_clean(file: &str, diags: &[lanes_model::Diagnostic]) -> Result<(), TestCaseError> {
    for d in diags {
        let line = d.to_string();
        prop_assert!(!line.contains('\n'), "multi-line diagnostic: {line:?}");
        prop_assert!(
            line.starts_with(file),
            "diagnostic does not name the file: {line}"
        );
    }
    Ok(())
}

fn seed_texts() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// An edit of a text: delete, insert, duplicate a line, or re-indent a line.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    Indent(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), "[ -~\\n\\t:\\-\\[\\]{}&*!|>'\"%@`#]{1,12}")
            .prop_map(|(a, s)| Edit::Insert(a, s)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), 0usize..6).prop_map(|(a, n)| Edit::Indent(a, n)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let len = chars.len().max(1);
    match edit {
        Edit::Delete(at, n) => {
            let at = at % len;
            let end = (at + n).min(chars.len());
            chars.drain(at.min(chars.len())..end);
            chars.into_iter().collect()
        }
        Edit::Insert(at, s) => {
            let at = at % (chars.len() + 1);
            let tail = chars.split_off(at);
            chars.extend(s.chars());
            chars.extend(tail);
            chars.into_iter().collect()
        }
        Edit::DuplicateLine(at) | Edit::Indent(at, _) => {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.is_empty() {
                return text.to_string();
            }
            let i = at % lines.len();
            match edit {
                Edit::DuplicateLine(_) => {
                    let l = lines[i].clone();
                    lines.insert(i, l);
                }
                Edit::Indent(_, n) => {
                    lines[i] = format!("{}{}", " ".repeat(*n), lines[i].trim_start())
                }
                _ => {}
            }
            lines.join("\n")
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        "[a-zA-Z0-9%._/-]{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("spec".to_string()),
                    Just("steps".to_string()),
                    Just("replicas".to_string()),
                    Just("labels".to_string()),
                    Just("name".to_string()),
                    Just("ingressRules".to_string()),
                    Just("match".to_string()),
                    "[a-zA-Z]{1,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (_, diags) = lanes_model::decode_bytes("f.yaml", &bytes);
        assert_clean("f.yaml", &diags)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,1024}") {
        let (_, diags) = lanes_model::decode_str("f.yaml", &text);
        assert_clean("f.yaml", &diags)?;
    }

    #[test]
    fn edited_seed_manifests_never_panic(file in 0usize..4, edits in prop::collection::vec(edit(), 1..6)) {
        let texts = seed_texts();
        let mut text = texts[file % texts.len()].clone();
        for e in &edits {
            text = apply(&text, e);
        }
        let (objects, diags) = lanes_model::decode_str("seed.yaml", &text);
        assert_clean("seed.yaml", &diags)?;
        // Whatever decoded is valid on its own terms: decoding its raw form again
        // gives the same object.
        for l in objects {
            let again = lanes_model::Object::from_value(l.object.raw.clone());
            prop_assert_eq!(again.as_ref().ok(), Some(&l.object));
        }
    }

    #[test]
    fn arbitrary_structures_of_every_kind_never_panic(
        kind in 0usize..9,
        spec in json_value(),
        metadata in json_value(),
    ) {
        let k = lanes_model::Kind::ALL[kind];
        let mut obj = Map::new();
        obj.insert("apiVersion".into(), Value::String(k.api_version()));
        obj.insert("kind".into(), Value::String(k.name().into()));
        obj.insert("metadata".into(), metadata);
        obj.insert("spec".into(), spec);
        if let Err(errors) = lanes_model::Object::from_value(Value::Object(obj)) {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(!e.to_string().contains('\n'));
            }
        }
    }
}
