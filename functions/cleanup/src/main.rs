//! `rekey-cleanup`: see `rekey::lambda::Function::Cleanup`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::Function::Cleanup).await
}
