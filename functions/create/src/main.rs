//! `rekey-create`: see `rekey::lambda::create`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    rekey::lambda::serve(rekey::lambda::create).await
}
