//! `rekey-test`: see `rekey::lambda::test`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::test).await
}
