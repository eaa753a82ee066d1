//! Staleness: editing a step makes what reads it stale, and the case's scores;
//! the re-run plan lists exactly that; undo makes it fresh again.

use trsr::curate::{Curation, Edit, Key, RerunItem, StepKind};

fn recurrent(c: &mut Curation, case: &str) {
    c.register_trace(
        case,
        "recurrent",
        vec![
            (StepKind::Block, vec!["A".into()], "s0".into()),
            (StepKind::Update, vec!["B".into()], "s1".into()),
            (StepKind::Update, vec!["C".into()], "s2".into()),
            (StepKind::Update, vec!["D".into()], "s3".into()),
        ],
        None,
    )
    .unwrap();
}

fn hierarchical(c: &mut Curation, case: &str) {
    c.register_trace(
        case,
        "hierarchical",
        vec![
            (StepKind::Block, vec!["A".into()], "b0".into()),
            (StepKind::Block, vec!["B".into()], "b1".into()),
            (StepKind::Block, vec!["C".into()], "b2".into()),
            (StepKind::Merge, vec![], "merged".into()),
        ],
        None,
    )
    .unwrap();
}

#[test]
fn a_fresh_trace_has_nothing_to_rerun() {
    let mut c = Curation::new();
    recurrent(&mut c, "c1");
    hierarchical(&mut c, "c1");
    c.record_scored("c1", "recurrent").unwrap();
    assert!(c.staleness("c1", "recurrent").unwrap().is_fresh());
    assert!(c.rerun_plan().is_empty());
}

#[test]
fn editing_a_recurrent_step_makes_every_later_step_and_the_scores_stale() {
    let mut c = Curation::new();
    recurrent(&mut c, "c1");
    c.record_scored("c1", "recurrent").unwrap();
    c.apply_at(
        &Key::step("c1", "recurrent", 1),
        Edit::SetText(Some("s1 edited".into())),
        1,
    )
    .unwrap();
    let s = c.staleness("c1", "recurrent").unwrap();
    assert_eq!(s.steps, vec![2, 3]);
    assert!(s.final_stale);
    assert!(s.scores_stale);
    assert_eq!(
        c.rerun_plan(),
        vec![RerunItem {
            case: "c1".into(),
            method: "recurrent".into(),
            steps: vec![2, 3],
            rescore: true
        }]
    );
    // The next step reads the edited text.
    assert_eq!(
        c.step_inputs("c1", "recurrent", 2).unwrap(),
        vec!["s1 edited"]
    );
}

#[test]
fn editing_a_hierarchical_block_makes_only_the_merge_stale() {
    let mut c = Curation::new();
    hierarchical(&mut c, "c1");
    c.record_scored("c1", "hierarchical").unwrap();
    c.apply_at(
        &Key::step("c1", "hierarchical", 1),
        Edit::SetText(Some("b1 edited".into())),
        1,
    )
    .unwrap();
    let s = c.staleness("c1", "hierarchical").unwrap();
    assert_eq!(s.steps, vec![3]);
    assert!(s.final_stale && s.scores_stale);
    assert_eq!(
        c.step_inputs("c1", "hierarchical", 3).unwrap(),
        vec!["b0", "b1 edited", "b2"]
    );
}

#[test]
fn editing_the_final_summary_makes_only_the_scores_stale() {
    let mut c = Curation::new();
    hierarchical(&mut c, "c1");
    recurrent(&mut c, "c2");
    c.record_scored("c1", "hierarchical").unwrap();
    c.apply_at(
        &Key::final_of("c1", "hierarchical"),
        Edit::SetText(Some("better".into())),
        1,
    )
    .unwrap();
    // c2 was never scored: an edit there has no scores to make stale.
    c.apply_at(
        &Key::final_of("c2", "recurrent"),
        Edit::SetText(Some("better".into())),
        1,
    )
    .unwrap();
    assert_eq!(
        c.rerun_plan(),
        vec![RerunItem {
            case: "c1".into(),
            method: "hierarchical".into(),
            steps: vec![],
            rescore: true
        }]
    );
}

#[test]
fn status_and_notes_changes_do_not_make_anything_stale() {
    let mut c = Curation::new();
    recurrent(&mut c, "c1");
    c.record_scored("c1", "recurrent").unwrap();
    let k = Key::step("c1", "recurrent", 0);
    c.apply_at(&k, Edit::SetStatus(trsr::curate::Status::Rejected), 1)
        .unwrap();
    c.apply_at(&k, Edit::SetNotes("n".into()), 1).unwrap();
    assert!(c.rerun_plan().is_empty());
}

#[test]
fn undoing_the_edit_makes_the_downstream_fresh_again_and_redo_stale_again() {
    let mut c = Curation::new();
    recurrent(&mut c, "c1");
    c.record_scored("c1", "recurrent").unwrap();
    c.apply_at(
        &Key::step("c1", "recurrent", 0),
        Edit::SetText(Some("x".into())),
        1,
    )
    .unwrap();
    assert_eq!(c.staleness("c1", "recurrent").unwrap().steps, vec![1, 2, 3]);
    c.undo();
    assert!(c.rerun_plan().is_empty());
    c.redo();
    assert_eq!(c.staleness("c1", "recurrent").unwrap().steps, vec![1, 2, 3]);
}

#[test]
fn rerunning_the_plan_step_by_step_clears_it() {
    let mut c = Curation::new();
    recurrent(&mut c, "c1");
    c.record_scored("c1", "recurrent").unwrap();
    c.apply_at(
        &Key::step("c1", "recurrent", 1),
        Edit::SetText(Some("e".into())),
        1,
    )
    .unwrap();
    let plan = c.rerun_plan();
    assert_eq!(plan.len(), 1);
    for &step in &plan[0].steps {
        let inputs = c.step_inputs("c1", "recurrent", step).unwrap();
        // A stand-in for the model: the new output quotes its input.
        c.record_step_output("c1", "recurrent", step, format!("after {}", inputs[0]))
            .unwrap();
        // Each re-run step is fresh; the ones after it are still stale.
        let s = c.staleness("c1", "recurrent").unwrap();
        assert!(s.steps.iter().all(|&j| j > step), "{s:?}");
    }
    assert_eq!(c.final_text("c1", "recurrent").unwrap(), "after after e");
    let s = c.staleness("c1", "recurrent").unwrap();
    assert!(s.steps.is_empty() && !s.final_stale && s.scores_stale);
    c.record_scored("c1", "recurrent").unwrap();
    assert!(c.rerun_plan().is_empty());
}

#[test]
fn rerunning_out_of_order_is_caught() {
    // Re-running step 3 before step 2 records step 3 against step 2's old output;
    // once step 2 is re-run with a different output, step 3 is stale again.
    let mut c = Curation::new();
    recurrent(&mut c, "c1");
    c.apply_at(
        &Key::step("c1", "recurrent", 1),
        Edit::SetText(Some("e".into())),
        1,
    )
    .unwrap();
    c.record_step_output("c1", "recurrent", 3, "new s3".into())
        .unwrap();
    assert_eq!(c.staleness("c1", "recurrent").unwrap().steps, vec![2, 3]);
    c.record_step_output("c1", "recurrent", 2, "new s2".into())
        .unwrap();
    assert_eq!(c.staleness("c1", "recurrent").unwrap().steps, vec![3]);
}

#[test]
fn undoing_an_edit_after_its_rerun_makes_the_downstream_stale() {
    // The re-run outputs were generated from the edited text; undoing the edit
    // changes their inputs back, so they must be re-run again.
    let mut c = Curation::new();
    hierarchical(&mut c, "c1");
    c.apply_at(
        &Key::step("c1", "hierarchical", 0),
        Edit::SetText(Some("e".into())),
        1,
    )
    .unwrap();
    c.record_step_output("c1", "hierarchical", 3, "merged 2".into())
        .unwrap();
    assert!(c.rerun_plan().is_empty());
    c.undo();
    assert_eq!(c.staleness("c1", "hierarchical").unwrap().steps, vec![3]);
}
