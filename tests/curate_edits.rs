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
