//! Malformed input: each case gives clear one-line errors that name the file and,
//! where there is one, the document, the object and the field; nothing panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lanes_model::{Diagnostic, decode_bytes};

const DEPLOY_HEAD: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n";

fn deploy(spec: &str) -> String {
    format!("{DEPLOY_HEAD}spec:\n{spec}")
}

fn rollout(canary: &str) -> String {
    format!(
        "apiVersion: rollouts.kruise.io/v1beta1\nkind: Rollout\nmetadata:\n  name: r\nspec:\n  workloadRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: d\n  strategy:\n    canary:\n{canary}"
    )
}

fn group(spec_extra: &str) -> String {
    format!(
        "apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLaneGroup\nmetadata:\n  name: g\nspec:\n  ingress:\n    gateway:\n      name: gw\n{spec_extra}  services:\n    - name: a\n"
    )
}

const GOOD_TEMPLATE: &str = "  selector:\n    matchLabels: {app: a}\n  template:\n    metadata:\n      labels: {app: a}\n    spec:\n      containers:\n        - name: c\n          image: i\n";

/// (case, input, substrings every message of the case must contain between them).
fn cases() -> Vec<(&'static str, Vec<u8>, Vec<&'static str>)> {
    let nested = format!("a: {}{}\n", "[".repeat(5000), "]".repeat(5000));
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        laughs.push_str(&format!(
            "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    let big = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: big\n  annotations:\n    blob: \"{}\"\n",
        "x".repeat(10 * 1024 * 1024)
    );
    vec![
        (
            "bad indentation",
            b"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n namespace: x\n".to_vec(),
            vec![":1: ", "invalid YAML at line 5"],
        ),
        (
            "tab indentation",
            b"apiVersion: v1\nkind: Service\n\tmetadata: {}\n".to_vec(),
            vec![":1: ", "invalid YAML at line 2", "found a tab"],
        ),
        (
            "unclosed flow sequence",
            b"apiVersion: v1\nkind: [Service\n".to_vec(),
            vec![":1: ", "invalid YAML", "line 2"],
        ),
        (
            "duplicate key",
            b"apiVersion: v1\nkind: Service\nkind: Pod\n".to_vec(),
            vec![":1: ", "line 3", "duplicate"],
        ),
        (
            "replicas: \"abc\" on a Deployment",
            deploy(&format!("  replicas: \"abc\"\n{GOOD_TEMPLATE}")).into_bytes(),
            vec![":1 Deployment/d: spec.replicas: ", "expected an integer"],
        ),
        (
            "replicas: abc on a Rollout step",
            rollout("      steps:\n        - replicas: abc\n").into_bytes(),
            vec![
                ":1 Rollout/r: spec.strategy.canary.steps[0].replicas: expected an integer or a percentage, got \"abc\"",
            ],
        ),
        (
            "traffic not a percentage",
            rollout("      steps:\n        - replicas: 1\n          traffic: lots\n").into_bytes(),
            vec!["spec.strategy.canary.steps[0].traffic: expected a percentage"],
        ),
        (
            "negative pause",
            rollout("      steps:\n        - replicas: 1\n          pause: {duration: -5}\n").into_bytes(),
            vec!["spec.strategy.canary.steps[0].pause.duration: must be 0 or more"],
        ),
        (
            "a Rollout with no steps",
            rollout("      steps: []\n").into_bytes(),
            vec!["spec.strategy.canary.steps: at least one step"],
        ),
        (
            "unknown kind",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n".to_vec(),
            vec![":1 ConfigMap/c: kind: unknown kind \"ConfigMap\""],
        ),
        (
            "missing name",
            b"apiVersion: v1\nkind: Service\nmetadata:\n  labels: {a: b}\nspec: {ports: [{port: 80}]}\n"
                .to_vec(),
            vec!["Service/<no name>: metadata.name: is required"],
        ),
        (
            "missing kind",
            b"apiVersion: v1\nmetadata:\n  name: x\n".to_vec(),
            vec![":1: kind: is required"],
        ),
        (
            "apiVersion not served for the kind",
            b"apiVersion: apps/v1\nkind: Service\nmetadata:\n  name: x\n".to_vec(),
            vec!["Service/x: apiVersion: ", "use v1"],
        ),
        (
            "a lane without the group label",
            b"apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLane\nmetadata:\n  name: l\nspec:\n  labelSelector: {t: x}\n"
                .to_vec(),
            vec!["ASMSwimLane/l: metadata.labels: a lane must carry the label `swimlane-group"],
        ),
        (
            "unknown ingress strategy",
            group("    ingressRouting:\n      ingressRoutingStrategy: random\n").into_bytes(),
            vec![
                "ASMSwimLaneGroup/g: spec.ingress.ingressRouting.ingressRoutingStrategy: ",
                "random",
            ],
        ),
        (
            "weighted without its rule",
            group("    ingressRouting:\n      ingressRoutingStrategy: weighted\n").into_bytes(),
            vec!["spec.ingress.ingressRouting.weightedRoutingRule: is required"],
        ),
        (
            "permissive without configuration",
            group("  isPermissive: true\n").into_bytes(),
            vec!["spec.permissiveModeConfiguration: is required"],
        ),
        (
            "a string match with two alternatives",
            b"apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLane\nmetadata:\n  name: l\n  labels: {swimlane-group: g}\nspec:\n  labelSelector: {t: x}\n  ingressRules:\n    - name: r\n      hosts: ['*']\n      match:\n        uri: {exact: /a, prefix: /b}\n      route: {destination: {host: a}}\n"
                .to_vec(),
            vec!["spec.ingressRules[0].match.uri: exactly one of exact, prefix or regex"],
        ),
        (
            "an invalid regular expression",
            b"apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLane\nmetadata:\n  name: l\n  labels: {swimlane-group: g}\nspec:\n  labelSelector: {t: x}\n  ingressRules:\n    - name: r\n      hosts: ['*']\n      match:\n        uri: {regex: '(unclosed'}\n      route: {destination: {host: a}}\n"
                .to_vec(),
            vec!["spec.ingressRules[0].match.uri.regex: invalid regular expression"],
        ),
        (
            "selector not matching the template",
            deploy("  selector:\n    matchLabels: {app: a}\n  template:\n    metadata:\n      labels: {app: b}\n    spec:\n      containers: [{name: c, image: i}]\n")
                .into_bytes(),
            vec!["Deployment/d: spec.template.metadata.labels: selector app=a does not match"],
        ),
        (
            "a Deployment without containers",
            deploy("  selector:\n    matchLabels: {app: a}\n  template:\n    metadata:\n      labels: {app: a}\n    spec:\n      containers: []\n")
                .into_bytes(),
            vec!["spec.template.spec.containers: at least one container"],
        ),
        (
            "a service port out of range",
            b"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports: [{port: 70000}]\n".to_vec(),
            vec!["Service/s: spec.ports[0].port: must be between 1 and 65535"],
        ),
        (
            "an upper-case name",
            b"apiVersion: v1\nkind: Service\nmetadata:\n  name: Mocka\nspec:\n  ports: [{port: 80}]\n".to_vec(),
            vec!["Service/Mocka: metadata.name: \"Mocka\" is not a valid name"],
        ),
        (
            "a null label value (the article's `version:`)",
            b"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels:\n    version:\nspec:\n  ports: [{port: 80}]\n".to_vec(),
            vec!["Service/s: metadata.labels.version: ", "null"],
        ),
        (
            "an invalid label value",
            b"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels:\n    version: \"v 1\"\nspec:\n  ports: [{port: 80}]\n".to_vec(),
            vec!["metadata.labels.version: \"v 1\" is not a valid label value"],
        ),
        (
            "metadata not a mapping",
            b"apiVersion: v1\nkind: Service\nmetadata: [a]\n".to_vec(),
            vec![":1 Service/<no name>: metadata: expected a mapping, got a sequence"],
        ),
        (
            "a document that is a list",
            b"- a\n- b\n".to_vec(),
            vec![":1: expected a mapping (an object), got a sequence"],
        ),
        (
            "a document that is a scalar",
            b"just some words\n".to_vec(),
            vec![":1: expected a mapping (an object), got a string"],
        ),
        ("an empty file", Vec::new(), vec![": no documents"]),
        (
            "a file of comments only",
            b"# nothing here\n---\n# nor here\n".to_vec(),
            vec![": no documents"],
        ),
        (
            "a binary file",
            vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0xff, 0xfe],
            vec![": not a YAML text file: NUL byte at offset 7"],
        ),
        (
            "invalid UTF-8",
            b"apiVersion: v1\nkind: \xff\xfe\n".to_vec(),
            vec![": not a YAML text file: invalid UTF-8 at byte 21 (line 2)"],
        ),
        (
            "a 10 MB document",
            big.into_bytes(),
            vec![":1: document of 10.0 MiB starting at line 1 is larger than the 3 MiB limit"],
        ),
        ("nesting 5000 deep", nested.into_bytes(), vec![":1: invalid YAML"]),
        ("an alias bomb", laughs.into_bytes(), vec![":1: invalid YAML"]),
        (
            "the second document bad",
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: ok\nspec:\n  ports: [{{port: 80}}]\n---\n{}",
                deploy(&format!("  replicas: -1\n{GOOD_TEMPLATE}"))
            )
            .into_bytes(),
            vec![":2 Deployment/d: spec.replicas: must be 0 or more"],
        ),
    ]
}

#[test]
fn every_malformed_input_gets_a_clear_located_one_line_error() {
    let cases = cases();
    assert!(cases.len() >= 20);
    for (name, input, wanted) in cases {
        let file = "in.yaml";
        let (objects, diags) = decode_bytes(file, &input);
        let errors: Vec<&Diagnostic> = diags.iter().filter(|d| d.is_error()).collect();
        assert!(
            !errors.is_empty(),
            "{name}: no error (objects: {})",
            objects.len()
        );
        let lines: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
        for line in &lines {
            assert!(!line.contains('\n'), "{name}: not one line: {line:?}");
            assert!(
                line.starts_with("in.yaml"),
                "{name}: does not name the file: {line}"
            );
            assert!(line.len() < 400, "{name}: too long to read: {line}");
        }
        let all = lines.join("\n");
        eprintln!("{name}:\n{all}");
        for w in wanted {
            assert!(all.contains(w), "{name}: wanted {w:?} in:\n{all}");
        }
    }
}

#[test]
fn duplicates_across_files_name_both_places() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports: [{port: 80}]\n";
    std::fs::write(dir.join("a.yaml"), svc).unwrap();
    std::fs::write(dir.join("b.yml"), format!("# again\n{svc}")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not yaml, ignored").unwrap();
    let errs = lanes_model::load_paths(std::slice::from_ref(&dir)).unwrap_err();
    let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0]
            .contains("b.yml:1 Service/s: duplicate object: Service default/s is also defined at")
    );
    assert!(text[0].contains("a.yaml:1"));
}

#[test]
fn one_bad_document_fails_the_whole_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed");
    for entry in std::fs::read_dir(&seed).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.join("99-bad.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ok\nspec:\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports: [{port: 0}]\n",
    )
    .unwrap();
    let errs = lanes_model::load_paths(std::slice::from_ref(&dir)).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .to_string()
            .contains("99-bad.yaml:2 Service/bad: spec.ports[0].port")
    );
}

#[test]
fn paths_that_do_not_exist_are_named() {
    let errs = lanes_model::load_paths(&["/no/such/dir/x.yaml".into()]).unwrap_err();
    assert!(
        errs[0]
            .to_string()
            .starts_with("/no/such/dir/x.yaml: cannot read")
    );
}
