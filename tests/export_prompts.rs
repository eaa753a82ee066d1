//! Export renders the workbench's real prompt templates: the recommender prompt is
//! the exact user message the scorer sees, the summarizer prompts are the
//! summarizer's own; and `trsr export` uses them (`--wording`, `--templates`).

use std::path::Path;

use serde_json::Value;
use trsr::curate::{Curation, Edit, Key, Status, StepKind};
use trsr::data::{Case, Catalogue, Item, ItemTextTemplate};
use trsr::export::{
    PromptRenderer, RecommenderPromptInput, SummarizerPromptInput, TemplateRenderer,
};
use trsr::project::{DatasetRef, Project};
use trsr::prompt::Templates;
use trsr::rank::{recommend_prompt, RecommendOptions};

fn catalogue() -> Catalogue {
    let mut c = Catalogue::new();
    for i in 1..=9 {
        c.insert(Item {
            id: format!("N{i}"),
            fields: vec![
                (
                    "category".into(),
                    if i % 2 == 0 { "sports" } else { "finance" }.into(),
                ),
                ("title".into(), format!("headline {i}")),
            ],
        });
    }
    c
}

fn case() -> Case {
    Case {
        case: "c1".into(),
        user: "U1".into(),
        history: (1..=6).map(|i| format!("N{i}")).collect(),
        target: "N7".into(),
        negatives: vec!["N8".into()],
        split: None,
    }
}

#[test]
fn recommender_prompt_is_the_scorers_user_message() {
    let templates = Templates::news();
    let cat = catalogue();
    let case = case();
    let tpl = ItemTextTemplate::default();
    let opts = RecommendOptions::default();
    let (prefix, suffixes) =
        recommend_prompt(&templates, &case, &cat, &tpl, Some("likes sports"), &opts);
    let recent: Vec<String> = case.history[case.history.len() - opts.recent..]
        .iter()
        .map(|id| tpl.render(cat.get(id).unwrap()))
        .collect();
    let candidate = tpl.render(cat.get("N7").unwrap());
    let r = TemplateRenderer::new(templates);
    let got = r.recommender(&RecommenderPromptInput {
        summary: "likes sports",
        recent_items: &recent,
        candidate: &candidate,
    });
    assert_eq!(got, format!("{prefix}{}", suffixes[0]));
    assert!(got.contains("Interest summary:\nlikes sports"), "{got}");
}

#[test]
fn summarizer_prompts_are_the_templates_own() {
    let t = Templates::products();
    let r = TemplateRenderer::new(t.clone());
    let items = vec!["a".to_string(), "b".to_string()];
    let prev = vec!["likes shoes".to_string()];
    let block = r.summarizer(&SummarizerPromptInput {
        kind: StepKind::Block,
        block_items: &items,
        previous: &[],
        recurrent: false,
    });
    assert_eq!(block, t.block_prompt(&items));
    let update = r.summarizer(&SummarizerPromptInput {
        kind: StepKind::Update,
        block_items: &items,
        previous: &prev,
        recurrent: true,
    });
    assert_eq!(update, t.update_prompt("likes shoes", &items));
    assert!(update.contains("likes shoes") && update.contains("1. a\n2. b"));
    let merge = r.summarizer(&SummarizerPromptInput {
        kind: StepKind::Merge,
        block_items: &[],
        previous: &prev,
        recurrent: false,
    });
    assert_eq!(merge, t.merge_prompt(&prev));

    // The reference's MIND recurrent first step is indented unlike its hierarchical
    // block prompt; the export follows the summarizer.
    let t = Templates::reference(trsr::preset::ReferenceWording::Mind);
    let r = TemplateRenderer::new(t.clone());
    let first = r.summarizer(&SummarizerPromptInput {
        kind: StepKind::Block,
        block_items: &items,
        previous: &[],
        recurrent: true,
    });
    assert_eq!(first, t.first_prompt(&items));
    assert!(
        first.starts_with("### User:\n\n                Given"),
        "{first:?}"
    );
    let block = r.summarizer(&SummarizerPromptInput {
        kind: StepKind::Block,
        block_items: &items,
        previous: &[],
        recurrent: false,
    });
    assert!(
        block.starts_with("### User:\n\n            Given"),
        "{block:?}"
    );
    assert!(block.contains("]:\na\nb\n### Assistant:\n"), "{block:?}");
}

/// A prepared dataset folder and a project naming it, with c1's final summary
/// edited and accepted.
fn known_project(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut items = String::new();
    for i in 1..=9 {
        items.push_str(&format!(
            "{{\"id\": \"N{i}\", \"category\": \"sports\", \"title\": \"headline {i}\"}}\n"
        ));
    }
    std::fs::write(data.join("items.jsonl"), items).unwrap();
    std::fs::write(
        data.join("cases.jsonl"),
        "{\"case\": \"c1\", \"user\": \"U1\", \"history\": [\"N1\", \"N2\", \"N3\", \"N4\", \"N5\", \"N6\"], \"target\": \"N7\", \"negatives\": [\"N8\"]}\n",
    )
    .unwrap();
    let mut c = Curation::new();
    c.register_trace(
        "c1",
        "recurrent",
        vec![
            (
                StepKind::Block,
                vec!["N1".into(), "N2".into(), "N3".into()],
                "s0".into(),
            ),
            (
                StepKind::Update,
                vec!["N4".into(), "N5".into(), "N6".into()],
                "s1".into(),
            ),
        ],
        None,
    )
    .unwrap();
    let f = Key::final_of("c1", "recurrent");
    c.apply(&f, Edit::SetText(Some("reads about sports".into())))
        .unwrap();
    c.apply(&f, Edit::SetStatus(Status::Accepted)).unwrap();
    let project = Project {
        dataset: Some(DatasetRef {
            path: "data".into(),
            format: Some("jsonl".into()),
        }),
        curation: c,
        ..Project::default()
    };
    let path = dir.join("p.ron");
    project.save(&path).unwrap();
    path
}

fn export(project: &Path, extra: &[&str], kind: &str, out: &Path) -> Vec<Value> {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_trsr"))
        .args(["export", "--project"])
        .arg(project)
        .args(["--kind", kind, "--format", "messages", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn user_turn(v: &Value) -> &str {
    v["messages"][0]["content"].as_str().unwrap()
}

#[test]
fn trsr_export_uses_the_real_templates() {
    let dir = tempfile::tempdir().unwrap();
    let project = known_project(dir.path());
    let out = dir.path().join("rec.jsonl");
    let rows = export(&project, &["--wording", "news"], "recommender", &out);
    assert_eq!(rows.len(), 2);
    let p = user_turn(&rows[0]);
    assert!(p.starts_with("Decide whether the user will click"), "{p}");
    assert!(p.contains("Interest summary:\nreads about sports"), "{p}");
    assert!(p.contains("Candidate article:\n"), "{p}");
    assert!(p.contains("headline 7") && user_turn(&rows[1]).contains("headline 8"));
    assert_eq!(rows[0]["messages"][1]["content"], "yes");
    assert_eq!(rows[1]["messages"][1]["content"], "no");

    let rows = export(&project, &["--wording", "products"], "summarizer", &out);
    assert_eq!(rows.len(), 1);
    let p = user_turn(&rows[0]);
    assert!(
        p.starts_with("Here is a description of a user's shopping preferences so far:\ns0"),
        "{p}"
    );
    assert!(p.contains("headline 4") && !p.contains("headline 1"), "{p}");
    assert_eq!(rows[0]["messages"][1]["content"], "reads about sports");

    // A templates file replaces the wording.
    let mut t = Templates::news();
    t.summarize_update = "UPDATE {summary} WITH {items}".into();
    let tf = dir.path().join("t.ron");
    t.save(&tf).unwrap();
    let rows = export(
        &project,
        &["--templates", tf.to_str().unwrap()],
        "summarizer",
        &out,
    );
    assert!(
        user_turn(&rows[0]).starts_with("UPDATE s0 WITH 1. "),
        "{:?}",
        rows[0]
    );
}
