//! `rekey-finish`: see `rekey::lambda::finish`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::finish).await
}
