//! The CRD YAML committed under `crds/` (and its copy in the Helm chart) must be exactly what
//! `prodaccess-operator crds` generates from the types.

use std::path::Path;

fn check_dir(dir: &Path) {
    let generated = prodaccess::cli::crds_yaml().unwrap_or_default();
    assert_eq!(generated.len(), 4, "four CRDs are generated");
    for (name, yaml) in generated {
        let path = dir.join(format!("{name}.yaml"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == yaml,
            "{} differs from the generated CRD; run `make crds`",
            path.display()
        );
    }
    let files = std::fs::read_dir(dir)
        .map(|d| d.count())
        .unwrap_or_default();
    assert_eq!(
        files,
        4,
        "{} holds exactly the generated CRDs",
        dir.display()
    );
}

#[test]
fn committed_crds_match_generated() {
    check_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds"));
}

#[test]
fn chart_crds_match_generated() {
    check_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/prodaccess-operator/crds"));
}
