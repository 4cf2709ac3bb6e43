//! `rekey-finish`: see `rekey::lambda::Function::Finish`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::Function::Finish).await
}
