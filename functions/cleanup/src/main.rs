//! `rekey-cleanup`: see `rekey::lambda::cleanup`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::cleanup).await
}
