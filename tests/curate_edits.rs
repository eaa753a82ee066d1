//! Annotations, undo/redo across edits, counters and filters.

use trsr::curate::{Curation, Edit, Key, Scope, Status, StepKind};

/// Two cases, each with a hierarchical trace of 2 blocks + merge.
fn curation() -> Curation {
    let mut c = Curation::new();
    for case in ["c1", "c2"] {
        c.register_trace(
            case,
            "hierarchical",
            vec![
                (
                    StepKind::Block,
                    vec!["N1".into(), "N2".into()],
                    format!("{case} block 0"),
                ),
                (
                    StepKind::Block,
                    vec!["N3".into(), "N4".into()],
                    format!("{case} block 1"),
                ),
                (StepKind::Merge, vec![], format!("{case} likes tech news")),
            ],
            Some("SmolLM2".into()),
        )
        .unwrap();
    }
    c
}

#[test]
fn accept_edit_and_notes_are_kept_with_provenance() {
    let mut c = curation();
    let k = Key::final_of("c1", "hierarchical");
    assert!(c
        .apply_at(&k, Edit::SetStatus(Status::Accepted), 1000)
        .unwrap());
    assert!(c
        .apply_at(
            &k,
            Edit::SetText(Some("c1 likes football news".into())),
            2000
        )
        .unwrap());
    assert!(c
        .apply_at(&k, Edit::SetNotes("too vague".into()), 3000)
        .unwrap());
    let a = c.annotation(&k).unwrap();
    assert_eq!(a.status, Status::Accepted);
    assert_eq!(a.model_text, "c1 likes tech news");
    assert_eq!(a.text(), "c1 likes football news");
    assert_eq!(a.notes, "too vague");
    assert_eq!((a.created_at_ms, a.updated_at_ms), (1000, 3000));
    assert_eq!(
        c.final_text("c1", "hierarchical").unwrap(),
        "c1 likes football news"
    );
    assert!(a.diff().iter().any(|d| d.text() == "football"));
}

#[test]
fn an_edit_equal_to_the_model_text_is_no_edit() {
    let mut c = curation();
    let k = Key::final_of("c1", "hierarchical");
    c.apply_at(&k, Edit::SetText(Some("other".into())), 1)
        .unwrap();
    c.apply_at(&k, Edit::SetText(Some("c1 likes tech news".into())), 2)
        .unwrap();
    assert!(!c.annotation(&k).unwrap().is_edited());
    // Setting what is already there records nothing.
    assert!(!c.apply_at(&k, Edit::SetText(None), 3).unwrap());
    assert!(!c
        .apply_at(
            &Key::final_of("c2", "hierarchical"),
            Edit::SetStatus(Status::Unreviewed),
            4
        )
        .unwrap());
    assert!(c.annotation(&Key::final_of("c2", "hierarchical")).is_none());
}

#[test]
fn undo_and_redo_walk_back_and_forth_across_all_edits() {
    let mut c = curation();
    let k1 = Key::final_of("c1", "hierarchical");
    let k2 = Key::step("c2", "hierarchical", 1);
    c.apply_at(&k1, Edit::SetStatus(Status::Accepted), 1)
        .unwrap();
    c.apply_at(&k2, Edit::SetText(Some("edited".into())), 2)
        .unwrap();
    c.apply_at(&k1, Edit::SetStatus(Status::Rejected), 3)
        .unwrap();

    assert_eq!(c.undo(), vec![k1.clone()]);
    assert_eq!(c.status(&k1), Status::Accepted);
    assert_eq!(c.undo(), vec![k2.clone()]);
    assert_eq!(c.effective_text(&k2).unwrap(), "c2 block 1");
    assert_eq!(c.undo(), vec![k1.clone()]);
    assert!(
        c.annotation(&k1).is_none(),
        "undo of the first edit removes the annotation"
    );
    assert!(!c.can_undo());
    assert!(c.undo().is_empty());

    assert_eq!(c.redo(), vec![k1.clone()]);
    assert_eq!(c.status(&k1), Status::Accepted);
    assert_eq!(c.redo(), vec![k2.clone()]);
    assert_eq!(c.effective_text(&k2).unwrap(), "edited");
    assert_eq!(c.redo(), vec![k1.clone()]);
    assert_eq!(c.status(&k1), Status::Rejected);
    assert!(!c.can_redo());
}

#[test]
fn a_new_edit_after_undo_drops_the_redo_branch() {
    let mut c = curation();
    let k = Key::final_of("c1", "hierarchical");
    c.apply_at(&k, Edit::SetStatus(Status::Accepted), 1)
        .unwrap();
    c.apply_at(&k, Edit::SetStatus(Status::Rejected), 2)
        .unwrap();
    c.undo();
    assert!(c.can_redo());
    c.apply_at(&k, Edit::SetStatus(Status::Flagged), 3).unwrap();
    assert!(!c.can_redo());
    assert!(c.redo().is_empty());
    assert_eq!(c.status(&k), Status::Flagged);
    c.undo();
    assert_eq!(c.status(&k), Status::Accepted);
}

#[test]
fn a_group_of_edits_is_one_undo_step() {
    let mut c = curation();
    let keys = c.keys(Scope::Finals);
    let edits: Vec<_> = keys
        .iter()
        .map(|k| (k.clone(), Edit::SetStatus(Status::Accepted)))
        .collect();
    assert!(c.apply_many_at(&edits, 5).unwrap());
    assert_eq!(c.counts(Scope::Finals).accepted, 2);
    assert_eq!(c.undo().len(), 2);
    assert_eq!(c.counts(Scope::Finals).accepted, 0);
}

#[test]
fn unknown_keys_are_errors_and_change_nothing() {
    let mut c = curation();
    let good = Key::final_of("c1", "hierarchical");
    let bad_step = Key::step("c1", "hierarchical", 3);
    let bad_case = Key::final_of("c9", "hierarchical");
    assert!(c
        .apply_at(&bad_step, Edit::SetStatus(Status::Accepted), 1)
        .is_err());
    assert!(c
        .apply_at(&bad_case, Edit::SetStatus(Status::Accepted), 1)
        .is_err());
    let r = c.apply_many_at(
        &[
            (good.clone(), Edit::SetStatus(Status::Accepted)),
            (bad_step, Edit::SetStatus(Status::Accepted)),
        ],
        1,
    );
    assert!(r.is_err());
    assert_eq!(c.status(&good), Status::Unreviewed);
    assert!(!c.can_undo());
}

#[test]
fn counters_and_filters_by_status() {
    let mut c = curation();
    // 2 traces x (3 steps + final) = 8 reviewable summaries; 2 finals.
    assert_eq!(c.counts(Scope::All).total(), 8);
    assert_eq!(c.counts(Scope::Finals).left(), 2);
    c.apply_at(
        &Key::final_of("c1", "hierarchical"),
        Edit::SetStatus(Status::Accepted),
        1,
    )
    .unwrap();
    c.apply_at(
        &Key::step("c2", "hierarchical", 0),
        Edit::SetStatus(Status::Flagged),
        1,
    )
    .unwrap();
    c.apply_at(
        &Key::step("c2", "hierarchical", 1),
        Edit::SetNotes("hm".into()),
        1,
    )
    .unwrap();
    let all = c.counts(Scope::All);
    assert_eq!(
        (all.done(), all.left(), all.accepted, all.flagged),
        (2, 6, 1, 1)
    );
    let finals = c.counts(Scope::Finals);
    assert_eq!((finals.done(), finals.left()), (1, 1));
    assert_eq!(
        c.filter(Scope::All, &[Status::Flagged]),
        vec![Key::step("c2", "hierarchical", 0)]
    );
    assert_eq!(
        c.filter(Scope::Finals, &[Status::Unreviewed]),
        vec![Key::final_of("c2", "hierarchical")]
    );
    assert_eq!(c.filter(Scope::Finals, &[]).len(), 2);
}

#[test]
fn status_names_parse() {
    for s in Status::ALL {
        assert_eq!(Status::parse(s.name()), Some(s));
    }
    assert_eq!(Status::parse("accept"), Some(Status::Accepted));
    assert_eq!(Status::parse("maybe"), None);
}

#[test]
fn invalid_traces_are_refused() {
    let mut c = Curation::new();
    assert!(c.register_trace("c", "m", vec![], None).is_err());
    assert!(c
        .register_trace("c", "m", vec![(StepKind::Update, vec![], "x".into())], None)
        .is_err());
    assert!(c
        .register_trace("c", "m", vec![(StepKind::Merge, vec![], "x".into())], None)
        .is_err());
}

#[test]
fn next_and_previous_walk_the_filtered_keys_and_wrap() {
    let mut c = curation();
    let f1 = Key::final_of("c1", "hierarchical");
    let f2 = Key::final_of("c2", "hierarchical");
    assert_eq!(c.next_key(None, Scope::Finals, &[], true), Some(f1.clone()));
    assert_eq!(
        c.next_key(None, Scope::Finals, &[], false),
        Some(f2.clone())
    );
    assert_eq!(
        c.next_key(Some(&f1), Scope::Finals, &[], true),
        Some(f2.clone())
    );
    assert_eq!(
        c.next_key(Some(&f2), Scope::Finals, &[], true),
        Some(f1.clone())
    );
    assert_eq!(
        c.next_key(Some(&f1), Scope::Finals, &[], false),
        Some(f2.clone())
    );
    // Accepting c1's final takes it out of the "unreviewed" filter; J from it still
    // goes to its neighbour, c2, and K from it goes back to c2 too (wrapping).
    c.apply_at(&f1, Edit::SetStatus(Status::Accepted), 1)
        .unwrap();
    let left = [Status::Unreviewed];
    assert_eq!(
        c.next_key(Some(&f1), Scope::Finals, &left, true),
        Some(f2.clone())
    );
    assert_eq!(
        c.next_key(Some(&f1), Scope::Finals, &left, false),
        Some(f2.clone())
    );
    // Over all steps: after c1's merge (step 2) comes c1's final, then c2's step 0.
    let s2 = Key::step("c1", "hierarchical", 2);
    assert_eq!(
        c.next_key(Some(&s2), Scope::All, &[], true),
        Some(f1.clone())
    );
    assert_eq!(
        c.next_key(Some(&f1), Scope::All, &[], true),
        Some(Key::step("c2", "hierarchical", 0))
    );
    c.apply_at(&f2, Edit::SetStatus(Status::Rejected), 1)
        .unwrap();
    assert_eq!(c.next_key(Some(&f1), Scope::Finals, &left, true), None);
}

#[test]
fn rescoring_keeps_the_scores_before_and_after() {
    use trsr::metrics::ScoredCandidate;
    let mut c = curation();
    let cand = |s: f64| {
        vec![
            ScoredCandidate {
                id: "N9".into(),
                label: 1,
                score: s,
            },
            ScoredCandidate {
                id: "N3".into(),
                label: 0,
                score: 0.5,
            },
        ]
    };
    c.record_scores("c1", "hierarchical", cand(0.2)).unwrap();
    let k = Key::final_of("c1", "hierarchical");
    c.apply_at(&k, Edit::SetText(Some("better".into())), 1)
        .unwrap();
    assert!(c.staleness("c1", "hierarchical").unwrap().scores_stale);
    c.record_scores("c1", "hierarchical", cand(0.9)).unwrap();
    let t = c.trace("c1", "hierarchical").unwrap();
    assert_eq!(t.scores_before.as_ref().unwrap()[0].score, 0.2);
    assert_eq!(t.scores.as_ref().unwrap()[0].score, 0.9);
    assert!(c.rerun_plan().is_empty());
}
