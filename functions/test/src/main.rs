//! `rekey-test`: see `rekey::lambda::Function::Test`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::Function::Test).await
}
