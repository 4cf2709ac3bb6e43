//! `rekey-test`: see `rekey::lambda::test`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::test).await
}
