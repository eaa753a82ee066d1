//! Export contents for a known project: recommender and summarizer SFT data,
//! both JSONL forms, inclusion rules, provenance; and the `trsr export` command.

use std::path::Path;

use serde_json::{json, Value};
use trsr::curate::{Curation, Edit, Key, Status, StepKind};
use trsr::data::{Case, Catalogue, Item, ItemTextTemplate};
use trsr::export::{
    recommender_examples, sft_json, summarizer_examples, write_sft_jsonl, ExportOptions,
    PromptRenderer, RecommenderPromptInput, SftForm, SummarizerPromptInput,
};

/// A renderer that shows exactly what it was given.
struct Echo;

impl PromptRenderer for Echo {
    fn summarizer(&self, i: &SummarizerPromptInput<'_>) -> String {
        format!(
            "{} items=[{}] prev=[{}]",
            i.kind.name(),
            i.block_items.join("|"),
            i.previous.join("|")
        )
    }
    fn recommender(&self, i: &RecommenderPromptInput<'_>) -> String {
        format!(
            "S={} R=[{}] C={}",
            i.summary,
            i.recent_items.join("|"),
            i.candidate
        )
    }
}

fn catalogue() -> Catalogue {
    let mut c = Catalogue::new();
    for i in 1..=9 {
        c.insert(Item {
            id: format!("N{i}"),
            fields: vec![("title".into(), format!("title {i}"))],
        });
    }
    c
}

fn cases() -> Vec<Case> {
    let case = |id: &str, negatives: Vec<&str>| Case {
        case: id.into(),
        user: format!("U{id}"),
        history: (1..=6).map(|i| format!("N{i}")).collect(),
        target: "N7".into(),
        negatives: negatives.into_iter().map(String::from).collect(),
        split: None,
    };
    vec![
        case("c1", vec!["N8"]),
        case("c2", vec!["N8", "N9"]),
        case("c3", vec!["N9"]),
    ]
}

/// c1: recurrent, final accepted and edited; c2: final rejected; c3: untouched.
/// c1's step 0 accepted, step 1 flagged.
fn curation() -> Curation {
    let mut c = Curation::new();
    for case in ["c1", "c2", "c3"] {
        c.register_trace(
            case,
            "recurrent",
            vec![
                (
                    StepKind::Block,
                    vec!["N1".into(), "N2".into(), "N3".into()],
                    format!("{case} s0"),
                ),
                (
                    StepKind::Update,
                    vec!["N4".into(), "N5".into(), "N6".into()],
                    format!("{case} s1"),
                ),
            ],
            Some("SmolLM2".into()),
        )
        .unwrap();
    }
    let f1 = Key::final_of("c1", "recurrent");
    c.apply_at(&f1, Edit::SetText(Some("c1 likes sports".into())), 10)
        .unwrap();
    c.apply_at(&f1, Edit::SetStatus(Status::Accepted), 11)
        .unwrap();
    c.apply_at(&f1, Edit::SetNotes("fixed topic".into()), 12)
        .unwrap();
    c.apply_at(
        &Key::final_of("c2", "recurrent"),
        Edit::SetStatus(Status::Rejected),
        13,
    )
    .unwrap();
    c.apply_at(
        &Key::step("c1", "recurrent", 0),
        Edit::SetStatus(Status::Accepted),
        14,
    )
    .unwrap();
    c.apply_at(
        &Key::step("c1", "recurrent", 1),
        Edit::SetStatus(Status::Flagged),
        15,
    )
    .unwrap();
    c
}

fn opts() -> ExportOptions {
    ExportOptions {
        recent_items: 2,
        item_text: ItemTextTemplate::with_fields(&["title"]),
        ..ExportOptions::default()
    }
}

#[test]
fn recommender_data_has_one_positive_and_one_negative_per_accepted_case() {
    let (ex, report) =
        recommender_examples(&curation(), &cases(), &catalogue(), &Echo, &opts()).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(report.examples, 2);
    assert_eq!(report.skipped.get("rejected"), Some(&1));
    assert_eq!(report.skipped.get("unreviewed"), Some(&1));
    // The item template renders `title: title N`; the 2 most recent items are N5, N6.
    assert_eq!(
        ex[0].prompt,
        "S=c1 likes sports R=[title: title 5|title: title 6] C=title: title 7"
    );
    assert_eq!(ex[0].completion, "yes");
    assert_eq!(
        ex[1].prompt,
        "S=c1 likes sports R=[title: title 5|title: title 6] C=title: title 8"
    );
    assert_eq!(ex[1].completion, "no");
    assert_eq!(
        sft_json(&ex[0], SftForm::PromptCompletion),
        json!({
            "prompt": ex[0].prompt,
            "completion": "yes",
            "case": "c1",
            "method": "recurrent",
            "kind": "final",
            "step": 1,
            "status": "accepted",
            "edited": true,
            "model_text": "c1 s1",
            "notes": "fixed topic",
            "annotated_at_ms": 12,
            "model": "SmolLM2",
            "candidate": "N7",
            "label": 1
        })
    );
}

#[test]
fn include_unreviewed_widens_but_never_to_rejected_or_flagged() {
    let o = ExportOptions {
        include_unreviewed: true,
        ..opts()
    };
    let (ex, report) =
        recommender_examples(&curation(), &cases(), &catalogue(), &Echo, &o).unwrap();
    let cases: Vec<_> = ex.iter().map(|e| e.provenance["case"].clone()).collect();
    assert_eq!(
        cases,
        vec![json!("c1"), json!("c1"), json!("c3"), json!("c3")]
    );
    assert_eq!(report.skipped.get("rejected"), Some(&1));
    // c3's summary is the model's own text.
    assert!(ex[2].prompt.starts_with("S=c3 s1 "), "{}", ex[2].prompt);
    assert_eq!(ex[3].provenance["candidate"], json!("N9"));
}

#[test]
fn the_negative_depends_only_on_seed_and_case() {
    let mut c = curation();
    c.apply_at(
        &Key::final_of("c2", "recurrent"),
        Edit::SetStatus(Status::Accepted),
        1,
    )
    .unwrap();
    let pick = |seed: u64, cs: &[Case]| {
        let o = ExportOptions { seed, ..opts() };
        let (ex, _) = recommender_examples(&c, cs, &catalogue(), &Echo, &o).unwrap();
        ex.iter()
            .filter(|e| e.provenance["case"] == "c2" && e.completion == "no")
            .map(|e| e.provenance["candidate"].clone())
            .collect::<Vec<_>>()
    };
    let all = cases();
    let a = pick(42, &all);
    assert_eq!(a.len(), 1);
    // Other cases' order and negatives do not change the choice.
    let mut other = all.clone();
    other.reverse();
    other.iter_mut().find(|c| c.case == "c1").unwrap().negatives = vec!["N9".into(), "N8".into()];
    assert_eq!(a, pick(42, &other), "other cases change the choice");
    let seen: std::collections::BTreeSet<String> =
        (0..32).map(|s| pick(s, &all)[0].to_string()).collect();
    assert_eq!(
        seen.len(),
        2,
        "both negatives get chosen across seeds: {seen:?}"
    );
}

#[test]
fn summarizer_data_uses_curated_inputs_and_texts() {
    let (ex, report) =
        summarizer_examples(&curation(), &cases(), &catalogue(), &Echo, &opts()).unwrap();
    // c1 step 0 (accepted) and c1 final (accepted); step 1 is flagged.
    let got: Vec<(String, String, String)> = ex
        .iter()
        .map(|e| {
            (
                e.provenance["kind"].as_str().unwrap().to_string(),
                e.prompt.clone(),
                e.completion.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "block".into(),
                "block items=[title: title 1|title: title 2|title: title 3] prev=[]".into(),
                "c1 s0".into()
            ),
            (
                "final".into(),
                "update items=[title: title 4|title: title 5|title: title 6] prev=[c1 s0]".into(),
                "c1 likes sports".into()
            ),
        ]
    );
    assert_eq!(report.skipped.get("flagged"), Some(&1));
}

#[test]
fn an_edited_step_feeds_the_next_prompt_and_stale_outputs_are_held_back() {
    let mut c = curation();
    c.apply_at(
        &Key::step("c3", "recurrent", 0),
        Edit::SetText(Some("c3 edited".into())),
        1,
    )
    .unwrap();
    c.apply_at(
        &Key::step("c3", "recurrent", 0),
        Edit::SetStatus(Status::Accepted),
        1,
    )
    .unwrap();
    c.apply_at(
        &Key::step("c3", "recurrent", 1),
        Edit::SetStatus(Status::Accepted),
        1,
    )
    .unwrap();
    let (ex, report) = summarizer_examples(&c, &cases(), &catalogue(), &Echo, &opts()).unwrap();
    let c3: Vec<_> = ex.iter().filter(|e| e.provenance["case"] == "c3").collect();
    assert_eq!(c3.len(), 1);
    assert_eq!(c3[0].completion, "c3 edited");
    // c3 step 1 was generated from the old step 0: stale until re-run.
    assert_eq!(report.skipped.get("stale (re-run first)"), Some(&1));
    c.record_step_output("c3", "recurrent", 1, "c3 new s1".into())
        .unwrap();
    // The re-run replaced the text step 1 was accepted with: it needs a new review.
    let (_, report) = summarizer_examples(&c, &cases(), &catalogue(), &Echo, &opts()).unwrap();
    assert_eq!(report.skipped.get("changed since review"), Some(&1));
    c.apply_at(
        &Key::step("c3", "recurrent", 1),
        Edit::SetStatus(Status::Accepted),
        2,
    )
    .unwrap();
    let (ex, _) = summarizer_examples(&c, &cases(), &catalogue(), &Echo, &opts()).unwrap();
    let s1 = ex
        .iter()
        .find(|e| e.provenance["case"] == "c3" && e.provenance["step"] == 1)
        .unwrap();
    assert_eq!(s1.completion, "c3 new s1");
    assert!(s1.prompt.ends_with("prev=[c3 edited]"), "{}", s1.prompt);
}

#[test]
fn a_case_missing_from_the_dataset_is_a_clear_error() {
    let err =
        recommender_examples(&curation(), &cases()[1..], &catalogue(), &Echo, &opts()).unwrap_err();
    assert!(err.to_string().contains("`c1`"), "{err}");
    let mut cat = Catalogue::new();
    cat.insert(Item {
        id: "N1".into(),
        fields: vec![],
    });
    let err = recommender_examples(&curation(), &cases(), &cat, &Echo, &opts()).unwrap_err();
    assert!(err.to_string().contains("item `N5`"), "{err}");
}

/// Checks each line is a JSON object of the TRL shape, with the same keys and
/// value types on every line (what `datasets.load_dataset("json")` needs).
fn check_jsonl_schema(text: &str, form: SftForm) -> usize {
    let mut shape: Option<Vec<(String, &'static str)>> = None;
    let kind = |v: &Value| match v {
        Value::String(_) => "string",
        Value::Number(n) if n.is_u64() || n.is_i64() => "int",
        Value::Number(_) => "float",
        Value::Bool(_) => "bool",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
        Value::Null => "null",
    };
    let mut n = 0;
    for line in text.lines() {
        n += 1;
        let v: Value = serde_json::from_str(line).unwrap();
        let obj = v.as_object().unwrap();
        match form {
            SftForm::PromptCompletion => {
                assert!(obj["prompt"].is_string() && obj["completion"].is_string());
                assert!(!obj.contains_key("messages"));
            }
            SftForm::Messages => {
                let m = obj["messages"].as_array().unwrap();
                assert_eq!(m.len(), 2);
                assert_eq!(m[0]["role"], "user");
                assert_eq!(m[1]["role"], "assistant");
                assert!(m[0]["content"].is_string() && m[1]["content"].is_string());
                assert_eq!(m[0].as_object().unwrap().len(), 2);
                assert!(!obj.contains_key("prompt"));
            }
        }
        let this: Vec<(String, &'static str)> =
            obj.iter().map(|(k, v)| (k.clone(), kind(v))).collect();
        match &shape {
            None => shape = Some(this),
            Some(s) => {
                // Same keys in the same order; same value types, where null may
                // stand in for any type (a nullable column).
                assert_eq!(s.len(), this.len(), "line {n} differs in keys");
                for ((k1, t1), (k2, t2)) in s.iter().zip(&this) {
                    assert_eq!(k1, k2, "line {n}");
                    assert!(
                        t1 == t2 || *t1 == "null" || *t2 == "null",
                        "line {n}: {k1}: {t1} vs {t2}"
                    );
                }
            }
        }
    }
    n
}

#[test]
fn jsonl_has_the_trl_shape_in_both_forms() {
    let o = ExportOptions {
        include_unreviewed: true,
        ..opts()
    };
    let (rec, _) = recommender_examples(&curation(), &cases(), &catalogue(), &Echo, &o).unwrap();
    let (sum, _) = summarizer_examples(&curation(), &cases(), &catalogue(), &Echo, &o).unwrap();
    for form in [SftForm::PromptCompletion, SftForm::Messages] {
        for ex in [&rec, &sum] {
            let mut buf = Vec::new();
            write_sft_jsonl(&mut buf, ex, form).unwrap();
            let text = String::from_utf8(buf).unwrap();
            assert_eq!(check_jsonl_schema(&text, form), ex.len());
        }
    }
}

fn write_dataset(dir: &Path) {
    let items: Vec<Value> = (1..=9)
        .map(|i| json!({"id": format!("N{i}"), "title": format!("title {i}")}))
        .collect();
    trsr::data::jsonl::write_jsonl(&dir.join("items.jsonl"), &items).unwrap();
    trsr::data::jsonl::write_jsonl(&dir.join("cases.jsonl"), cases()).unwrap();
}

#[test]
fn trsr_export_writes_sft_jsonl_from_a_project_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write_dataset(&dir.path().join("data"));
    let mut p = trsr::project::Project::new();
    p.dataset = Some(trsr::project::DatasetRef {
        path: "data".into(),
        format: Some("jsonl".into()),
    });
    p.curation = curation();
    let project = dir.path().join("p.ron");
    p.save(&project).unwrap();
    let out = dir.path().join("rec.jsonl");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trsr"))
            .arg("export")
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "--project",
        project.to_str().unwrap(),
        "--kind",
        "recommender",
        "--format",
        "messages",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(check_jsonl_schema(&text, SftForm::Messages), 2);
    assert!(text.contains("\"content\":\"yes\""), "{text}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 examples"));

    let out2 = dir.path().join("sum.jsonl");
    let o = run(&[
        "--project",
        project.to_str().unwrap(),
        "--kind",
        "summarizer",
        "--format",
        "prompt-completion",
        "--include-unreviewed",
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out2).unwrap();
    // c1: step 0 + final; c3: step 0 + final (unreviewed); c2 step 0, final rejected
    // -> c2 step 0 and step 1 (unreviewed).
    assert_eq!(check_jsonl_schema(&text, SftForm::PromptCompletion), 6);

    // A wrong format for the kind is a clear error, and nothing is written.
    let out3 = dir.path().join("bad.jsonl");
    let o = run(&[
        "--project",
        project.to_str().unwrap(),
        "--kind",
        "recommender",
        "--format",
        "csv",
        "--out",
        out3.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("prompt-completion"));
    assert!(!out3.exists());
}

#[test]
fn an_accepted_text_replaced_by_a_rerun_needs_a_new_review() {
    let mut c = curation();
    // c1's step 0 was accepted as "c1 s0"; a re-run replaces the model's text.
    let k = Key::step("c1", "recurrent", 0);
    assert!(!c.review_outdated(&k));
    c.record_step_output("c1", "recurrent", 0, "c1 s0 again".into())
        .unwrap();
    assert!(c.review_outdated(&k));
    let (ex, report) = summarizer_examples(&c, &cases(), &catalogue(), &Echo, &opts()).unwrap();
    assert!(ex.iter().all(|e| e.completion != "c1 s0 again"));
    assert_eq!(report.skipped.get("changed since review"), Some(&1));
    // Accepting it again (a review of the new text) exports the new text.
    assert!(c
        .apply_at(&k, Edit::SetStatus(Status::Accepted), 3)
        .unwrap());
    assert_eq!(c.annotation(&k).unwrap().model_text, "c1 s0 again");
    assert!(!c.review_outdated(&k));
    let (ex, _) = summarizer_examples(&c, &cases(), &catalogue(), &Echo, &opts()).unwrap();
    assert!(ex.iter().any(|e| e.completion == "c1 s0 again"));
}

#[test]
fn trsr_export_preset_reference_writes_the_reference_prompts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write_dataset(&dir.path().join("data"));
    let mut p = trsr::project::Project::new();
    p.dataset = Some(trsr::project::DatasetRef {
        path: "data".into(),
        format: Some("jsonl".into()),
    });
    p.curation = curation();
    let project = dir.path().join("p.ron");
    p.save(&project).unwrap();
    let out = dir.path().join("rec.jsonl");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trsr"))
            .args([
                "export",
                "--project",
                project.to_str().unwrap(),
                "--kind",
                "recommender",
                "--format",
                "prompt-completion",
                "--out",
                out.to_str().unwrap(),
                "--preset",
                "reference",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    // A JSONL dataset: the reference wording must be named.
    let o = run(&[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--reference-wording"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&["--reference-wording", "mind"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let prompt = first["prompt"].as_str().unwrap();
    assert!(
        prompt.starts_with("### User:\nGiven a news reading preference summary of the user"),
        "{prompt}"
    );
    assert!(prompt.contains("\n[Historical News]\nid: N"), "{prompt}");
    assert!(prompt.ends_with("\n### Assistant:\n"), "{prompt}");
    assert!(!prompt.contains("1. "), "no numbering: {prompt}");
}
