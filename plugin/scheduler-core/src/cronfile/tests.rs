use super::*;
use crate::registry::Registry;

const SHIPPED: &str = include_str!("../../../../ops/task_registry.yml");
const SHIPPED_CRON: &str = include_str!("../../../../ops/cron/jobs.cron");

fn reg() -> Registry {
    Registry::parse("ops/task_registry.yml", SHIPPED, None).unwrap()
}

#[test]
fn shipped_cron_file_is_the_rendered_registry() {
    assert_eq!(SHIPPED_CRON, render(&reg(), &Header::default()));
    assert!(check(&reg(), SHIPPED_CRON).is_empty());
}

#[test]
fn rendered_lines_are_cron_d_lines() {
    let text = render(&reg(), &Header::default());
    let line = text
        .lines()
        .find(|l| l.contains("--job weekly_backlog_generate"))
        .unwrap();
    assert_eq!(
        line,
        "20 6 * * 1 root cd \"$REPO_ROOT\" && { set -a; [ ! -r .env ] || . ./.env; set +a; \
         backlog-bridge run-job --job weekly_backlog_generate; } >> /var/log/daarion/backlog_generate.log 2>&1"
    );
    assert!(text.contains("\nREPO_ROOT=/opt/daarion\nROUTER_URL=http://localhost:8000\n"));
    assert!(text.contains("/var/log/daarion/risk_snapshot.log"));
    assert!(!text.contains('%'), "% is special in cron commands");
}

fn drifts(text: &str) -> Vec<String> {
    check(&reg(), text).iter().map(|d| d.to_string()).collect()
}

#[test]
fn operator_edits_of_the_header_are_not_drift() {
    let text = SHIPPED_CRON
        .replace("REPO_ROOT=/opt/daarion", "REPO_ROOT=/srv/daarion")
        .replace(
            "ROUTER_URL=http://localhost:8000",
            "ROUTER_URL=http://router:9000",
        );
    assert!(drifts(&text).is_empty());
    // Spacing of a job line does not matter.
    let text = SHIPPED_CRON.replace("0 9 * * * root", "0  9 * *  *   root");
    assert!(drifts(&text).is_empty(), "{:?}", drifts(&text));
}

#[test]
fn each_drift_is_named() {
    let text = SHIPPED_CRON
        .replace("20 6 * * 1 root", "0 6 * * 1 root")
        .replace("ROUTER_URL=http://localhost:8000\n", "")
        .replace("risk_cleanup.log", "cleanup.log");
    let text: String = text
        .lines()
        .filter(|l| !l.contains("--job daily_backlog_cleanup"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + "0 1 * * * root backlog-bridge run-job --job old_job\n* * * * root broken\n61 * * * * root x y\n";
    let d = drifts(&text);
    let has = |s: &str| assert!(d.iter().any(|x| x.contains(s)), "{s} not in {d:#?}");
    has("header: ROUTER_URL is not set");
    has("job weekly_backlog_generate: line ");
    has("schedule `0 6 * * 1`, the registry says `20 6 * * 1`");
    has("job risk_history_cleanup: line ");
    has("command differs");
    has("job daily_backlog_cleanup: missing (the registry runs it at `40 3 * * *`)");
    has("job old_job: line ");
    has("is not in the registry");
    has("not a cron.d job line");
    has("invalid schedule: minute field `61`");
    assert_eq!(d.len(), 7, "{d:#?}");
}

#[test]
fn a_duplicated_line_is_drift() {
    let line = SHIPPED_CRON
        .lines()
        .find(|l| l.contains("--job hourly_risk_snapshot"))
        .unwrap();
    let d = drifts(&format!("{SHIPPED_CRON}{line}\n"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("job hourly_risk_snapshot: appears 2 times"),
        "{d:?}"
    );
}

#[test]
fn quote_leaves_plain_words_and_neutralizes_the_rest() {
    assert_eq!(quote("weekly_backlog_generate"), "weekly_backlog_generate");
    assert_eq!(
        quote("/var/log/daarion/a-b.log"),
        "/var/log/daarion/a-b.log"
    );
    assert_eq!(quote("x.log;touch p;#"), "'x.log;touch p;#'");
    assert_eq!(quote("it's"), r"'it'\''s'");
    assert_eq!(quote("50%"), r"'50\%'");
    assert_eq!(quote(""), "''");
}

/// A deployed line that is not exactly what `cron render` writes is drift, even when the job
/// id and schedule match: a tampered redirection, an appended command, a `%`.
#[test]
fn a_job_line_must_be_exactly_the_rendered_one() {
    let line = SHIPPED_CRON
        .lines()
        .find(|l| l.contains("--job weekly_backlog_generate"))
        .unwrap();
    for tampered in [
        line.replace("backlog_generate.log", "x.log;touch${IFS}p;#"),
        line.replace("backlog_generate.log", "gen.log$(id)"),
        line.replace(" 2>&1", " 2>&1; curl evil"),
        line.replace("run-job", "run-job%"),
        line.replace("set -a;", "set  -a;"),
    ] {
        let text = SHIPPED_CRON.replace(line, &tampered);
        let d = drifts(&text);
        assert!(
            d.len() == 1
                && d[0].contains("job weekly_backlog_generate: line ")
                && d[0].contains("command differs"),
            "{tampered}: {d:#?}"
        );
    }
}

#[test]
fn unknown_header_variables_and_another_shell_are_drift() {
    let text = SHIPPED_CRON.replace(
        "SHELL=/bin/sh\n",
        "SHELL=/bin/bash\nBASH_ENV=/tmp/x\nMAILTO=ops@example.org\n",
    );
    let d = drifts(&text);
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(
        d[0].contains("SHELL=/bin/bash: the job lines are written for /bin/sh"),
        "{d:#?}"
    );
    assert!(
        d[1].contains("`BASH_ENV=` is not a variable `cron render` writes"),
        "{d:#?}"
    );
}
