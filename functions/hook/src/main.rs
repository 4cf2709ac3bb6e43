//! `rekey-hook`: see `rekey::lambda::Function::Hook`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::Function::Hook).await
}
