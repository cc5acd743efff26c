//! Saved plans against a real emulator process: `plan --out FILE` then `apply FILE` carries out
//! exactly the plan shown, and refuses it as stale (changing nothing) after a tenant file edit
//! or an out-of-band change to a fact one of its steps depends on.

mod common;

use common::{Aws, Emulator, Run, Workspace};

/// The step lines of a `plan` (`  + ...` under `tenant X:`) as `X: + ...`, the form `apply`
/// echoes them in.
fn planned_steps(plan: &Run) -> Vec<String> {
    let mut tenant = String::new();
    let mut out = Vec::new();
    for line in plan.stdout.lines() {
        if let Some(t) = line.strip_prefix("tenant ").and_then(|l| l.strip_suffix(':')) {
            tenant = t.to_string();
        } else if line == "organization:" {
            tenant = "organization".into();
        } else if let Some(step) = line.strip_prefix("  ") {
            out.push(format!("{tenant}: {step}"));
        }
    }
    out.sort();
    out
}

/// The step lines `apply` echoed as it carried them out.
fn applied_steps(apply: &Run) -> Vec<String> {
    let mut out: Vec<String> = apply
        .stdout
        .lines()
        .filter(|l| !l.starts_with("tenant ") && !l.starts_with("Apply complete") && l.contains(": "))
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_plan_is_carried_out_exactly_as_shown_and_only_once() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    // Terraform's spelling, `-out FILE`, is accepted too.
    let plan = ws.run(&emu.endpoint, &["plan", "-out", "onboard.plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stderr.contains("Saved the plan to onboard.plan"), "{plan:?}");
    let saved: serde_json::Value = serde_json::from_str(&ws.read("onboard.plan")).unwrap();
    assert_eq!(saved["format_version"], 1);
    assert!(saved["inputs"]["tenants/acme.toml"].is_string(), "inputs are digested: {saved}");

    let apply = ws.run(&emu.endpoint, &["apply", "onboard.plan"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(applied_steps(&apply), planned_steps(&plan), "apply carried out the saved plan, step for step");
    assert!(!apply.stdout.contains("Plan:"), "a saved plan is not shown or planned again: {apply:?}");
    assert_eq!(ws.run(&emu.endpoint, &["plan"]).code, 0, "converged");

    // Carried out once: the same file again finds nothing left to do and changes nothing.
    let again = ws.run(&emu.endpoint, &["apply", "onboard.plan"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(applied_steps(&again).is_empty(), "{again:?}");
    let aws = Aws::new(&emu.endpoint).await;
    aws.assert_one_account_each("acme", "after applying a saved plan twice").await;
    aws.assert_one_account_each("globex", "after applying a saved plan twice").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_plan_is_refused_as_stale_after_a_tenant_file_edit() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply"]).code, 0);
    let acme = ws.read("tenants/acme.toml");
    ws.write("tenants/acme.toml", &acme.replace("\"confidential\"", "\"secret\""));
    let plan = ws.run(&emu.endpoint, &["plan", "--out", "tag.plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("\"confidential\" -> \"secret\""), "{plan:?}");

    // Another tenant's file is edited after the plan was made: its emails and names are part of
    // every tenant's claims, so the whole plan is stale.
    let globex = ws.read("tenants/globex.toml");
    ws.write("tenants/globex.toml", &format!("{globex}\n# edited\n"));
    let apply = ws.run(&emu.endpoint, &["apply", "tag.plan"]);
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(apply.stderr.contains("tenants/globex.toml changed"), "names the file: {apply:?}");
    assert!(apply.stderr.contains("the plan is stale"), "{apply:?}");
    // In JSON, the same marker as a tenant refused as stale, with the changes as a list.
    let apply = ws.run(&emu.endpoint, &["apply", "tag.plan", "--output", "json"]);
    assert_eq!(apply.code, 1, "{apply:?}");
    let doc: serde_json::Value = serde_json::from_str(&apply.stdout).unwrap_or_else(|e| panic!("{e}: {apply:?}"));
    assert_eq!(doc["stale"], true, "{doc}");
    assert_eq!(doc["stale_changes"], serde_json::json!(["tenants/globex.toml changed"]), "{doc}");
    let aws = Aws::new(&emu.endpoint).await;
    let prod = aws.only_account("acme", "production").await;
    assert_eq!(aws.tags(&prod).await["data-classification"], "confidential", "nothing was changed");

    // Put back, the same plan is carried out.
    ws.write("tenants/globex.toml", &globex);
    let apply = ws.run(&emu.endpoint, &["apply", "tag.plan"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(aws.tags(&prod).await["data-classification"], "secret");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_plan_is_refused_as_stale_after_an_out_of_band_change() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply"]).code, 0);
    // Both tenants' files change a tag; the plan covers both.
    let acme = ws.read("tenants/acme.toml");
    ws.write("tenants/acme.toml", &acme.replace("\"confidential\"", "\"secret\""));
    let globex = ws.read("tenants/globex.toml");
    assert!(globex.contains("cost-center = \"cc-2002\""), "the example globex file has this tag");
    ws.write("tenants/globex.toml", &globex.replacen("cost-center = \"cc-2002\"", "cost-center = \"cc-2999\"", 1));
    let plan = ws.run(&emu.endpoint, &["plan", "--out", "tags.plan", "--output", "json"]);
    assert_eq!(plan.code, 2, "{plan:?}");

    // Someone changes the tag of acme's production account by hand after the plan was made.
    let aws = Aws::new(&emu.endpoint).await;
    let prod = aws.only_account("acme", "production").await;
    aws.org
        .tag_resource()
        .resource_id(&prod)
        .tags(aws_sdk_organizations::types::Tag::builder().key("data-classification").value("public").build().unwrap())
        .send()
        .await
        .unwrap();

    let apply = ws.run(&emu.endpoint, &["apply", "tags.plan", "--output", "json"]);
    assert_eq!(apply.code, 1, "{apply:?}");
    let report: serde_json::Value = serde_json::from_str(&apply.stdout).unwrap_or_else(|e| panic!("{e}: {apply:?}"));
    let tenant = |id: &str| report["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == id).unwrap().clone();
    let acme = tenant("acme");
    assert_eq!(acme["stale"], true, "{report}");
    let error = acme["error"].as_str().unwrap();
    assert!(
        error.contains("production: tag data-classification was \"confidential\", is now \"public\""),
        "names the fact that changed: {error}"
    );
    assert_eq!(
        acme["stale_changes"],
        serde_json::json!(["production: tag data-classification was \"confidential\", is now \"public\""]),
        "{report}"
    );
    assert_eq!(acme["applied"], serde_json::json!([]), "{report}");
    assert_eq!(aws.tags(&prod).await["data-classification"], "public", "the stale plan changed nothing");
    // globex's part of the plan still held: it was carried out.
    assert!(tenant("globex")["error"].is_null(), "{report}");
    let globex_prod = aws.only_account("globex", "production").await;
    assert_eq!(aws.tags(&globex_prod).await["cost-center"], "cc-2999", "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_plan_is_refused_for_other_credentials_or_another_format() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["plan", "--out", "p.json"]).code, 2);
    let text = ws.read("p.json");
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["management_account_id"] = "999999999999".into();
    ws.write("other.json", &doc.to_string());
    let run = ws.run(&emu.endpoint, &["apply", "other.json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("made for management account 999999999999"), "{run:?}");

    doc["management_account_id"] = emu.management_account_id().into();
    doc["format_version"] = 99.into();
    ws.write("future.json", &doc.to_string());
    let run = ws.run(&emu.endpoint, &["apply", "future.json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("plan format version 99"), "{run:?}");

    ws.write("broken.json", &text[..text.len() / 2]);
    let run = ws.run(&emu.endpoint, &["apply", "broken.json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("broken.json") && run.stderr.contains("line"), "names file and line: {run:?}");

    let run = ws.run(&emu.endpoint, &["apply", "p.json", "acme"]);
    assert_eq!(run.code, 64, "a plan file and tenant names together are a usage error: {run:?}");

    // A plan listing a tenant twice (hand-made: the last entry would win) is refused.
    let mut twice: serde_json::Value = serde_json::from_str(&text).unwrap();
    let acme = twice["plan"]["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == "acme").unwrap().clone();
    let mut empty = acme.clone();
    empty["steps"] = serde_json::json!([]);
    twice["plan"]["tenants"].as_array_mut().unwrap().extend([acme, empty]);
    ws.write("twice.json", &twice.to_string());
    let run = ws.run(&emu.endpoint, &["apply", "twice.json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("tenant acme is in the plan twice"), "{run:?}");

    // Another tool's plan (Terraform's JSON also has a format_version) is named as such.
    ws.write("tf.json", r#"{"format_version": "1.2", "terraform_version": "1.9.0"}"#);
    let run = ws.run(&emu.endpoint, &["apply", "tf.json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not a plan file saved by `tenantry plan -out`"), "{run:?}");

    // A plan file name `apply` would take for a tenant id is refused both ways: `plan -out acme`
    // and, for a file named like a tenant, `apply acme` (which would plan acme afresh).
    let run = ws.run(&emu.endpoint, &["plan", "-out", "acme"]);
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("`acme.plan` or `./acme`"), "{run:?}");
    ws.write("acme", &text);
    let run = ws.run(&emu.endpoint, &["apply", "acme", "--auto-approve"]);
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("tenantry apply ./acme"), "{run:?}");
    let aws = Aws::new(&emu.endpoint).await;
    assert!(aws.tenant_accounts().await.is_empty(), "nothing was created");
}

/// The id of the OU at `path` (`A/B`), looked up from the root.
async fn ou_id(aws: &Aws, path: &str) -> Option<String> {
    let roots = aws.org.list_roots().send().await.unwrap();
    let mut parent = roots.roots()[0].id().unwrap().to_string();
    for seg in path.split('/') {
        let ous = aws.org.list_organizational_units_for_parent().parent_id(&parent).send().await.unwrap();
        parent = ous.organizational_units().iter().find(|o| o.name() == Some(seg))?.id()?.to_string();
    }
    Some(parent)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ou_deleted_after_the_plan_makes_it_stale_and_is_not_created_by_a_tenant_step() {
    let emu = Emulator::start();
    let ws = Workspace::new();
    assert_eq!(ws.run(&emu.endpoint, &["apply"]).code, 0);
    let aws = Aws::new(&emu.endpoint).await;
    // An OU made by hand, and a new tenant whose production account goes there.
    let tenants = ou_id(&aws, "Tenants").await.expect("Tenants OU");
    aws.org.create_organizational_unit().parent_id(&tenants).name("Gold").send().await.unwrap();
    ws.copy_of_acme("initech");
    let text = ws.read("tenants/initech.toml").replacen("ou = \"Tenants/Production\"", "ou = \"Tenants/Gold\"", 1);
    ws.write("tenants/initech.toml", &text);
    let plan = ws.run(&emu.endpoint, &["plan", "initech", "-out", "gold.plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    let saved: serde_json::Value = serde_json::from_str(&ws.read("gold.plan")).unwrap();
    assert_eq!(saved["plan"]["organization"], serde_json::json!([]), "the OU exists when the plan is made");

    // The OU is deleted before the plan is carried out: the plan is stale; no OU is made by a
    // tenant's step outside the organization's lease.
    let gold = ou_id(&aws, "Tenants/Gold").await.unwrap();
    aws.org.delete_organizational_unit().organizational_unit_id(&gold).send().await.unwrap();
    // An editor's backup file is not an input: it does not make the plan stale.
    ws.write("tenants/initech.toml.bak", "not a tenant");
    let apply = ws.run(&emu.endpoint, &["apply", "gold.plan"]);
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(apply.stderr.contains("the plan is stale") && apply.stderr.contains("create OU Tenants/Gold"), "{apply:?}");
    assert!(ou_id(&aws, "Tenants/Gold").await.is_none(), "no OU was created");
    assert!(aws.tenant_accounts().await.keys().all(|(t, _)| t != "initech"), "nothing of initech was created");
}
