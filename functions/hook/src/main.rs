//! `rekey-hook`: see `rekey::lambda::hook`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::hook).await
}
