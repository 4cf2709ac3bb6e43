//! `rekey-create`: see `rekey::lambda::Function::Create`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::Function::Create).await
}
