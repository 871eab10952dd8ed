//! Unit tests of `store`.

use super::*;

fn meta(name: &str) -> VersionMeta {
    VersionMeta {
        id: String::new(),
        created: now(),
        source: "test".into(),
        format: ExportFormat::Bundle,
        bot_name: name.into(),
        bot_version: None,
        stats: Default::default(),
        warnings: vec![],
        validation: vec![],
        parity: None,
        import_ms: 0.0,
    }
}

fn bundle(name: &str) -> Bundle {
    let mut b = Bundle::demo();
    b.bot.name = name.into();
    b
}

#[test]
fn same_content_same_version_and_rollback_pops_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, new) = store.put(&bundle("A"), &meta("A")).unwrap();
    assert!(new);
    let mut again = bundle("A");
    again
        .bot
        .source
        .insert("export".into(), "elsewhere.zip".into());
    assert_eq!(
        store.put(&again, &meta("A")).unwrap(),
        (a.clone(), false),
        "source does not change the id"
    );
    let (b, _) = store.put(&bundle("B"), &meta("B")).unwrap();
    let (c, _) = store.put(&bundle("C"), &meta("C")).unwrap();
    store.activate(&a, "test").unwrap();
    store.activate(&b, "test").unwrap();
    store.activate(&c, "test").unwrap();
    assert_eq!(
        store.state().unwrap().last_good.as_deref(),
        Some(b.as_str())
    );
    assert_eq!(store.rollback().unwrap(), b);
    assert_eq!(store.rollback().unwrap(), a);
    assert!(store.rollback().is_err(), "nothing before A");
    assert_eq!(store.resolve(&b[..6]).unwrap(), b);
}

#[test]
fn prune_keeps_active_last_good_and_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ids: Vec<String> = (0..6)
        .map(|i| store.put(&bundle(&format!("v{i}")), &meta("v")).unwrap().0)
        .collect();
    store.activate(&ids[0], "t").unwrap();
    store.activate(&ids[1], "t").unwrap();
    let removed = store.prune(2).unwrap();
    let left: Vec<String> = store
        .versions()
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    for keep in [&ids[0], &ids[1]] {
        assert!(left.contains(keep), "active/last-good kept: {left:?}");
    }
    assert_eq!(removed.len() + left.len(), 6);
    assert!(left.len() <= 4, "{left:?}");
}

#[test]
fn leftovers_of_an_interrupted_write_are_cleared_and_never_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, _) = store.put(&bundle("A"), &meta("A")).unwrap();
    store.activate(&a, "t").unwrap();
    // A crash mid-write: a staged version in tmp/, a half-written state temp file.
    std::fs::create_dir_all(dir.path().join("tmp/deadbeef-1-1")).unwrap();
    std::fs::write(
        dir.path().join("tmp/deadbeef-1-1/bundle.yaml"),
        "format: understu",
    )
    .unwrap();
    std::fs::write(dir.path().join(".state.json.1-1.tmp"), "{\"act").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.active().unwrap().as_deref(), Some(a.as_str()));
    assert_eq!(store.versions().unwrap().len(), 1);
    assert!(std::fs::read_dir(dir.path().join("tmp"))
        .unwrap()
        .next()
        .is_none());
}
