//! The in-repo OTLP/HTTP receiver as a process, for benchmarks: prints
//! `otlp receiver on http://127.0.0.1:PORT`, then, on each line read from
//! stdin, the number of spans received so far. Ends when stdin closes.
//!
//!     cargo run -p rag-aws-emulator --example otlp_receiver

use std::io::BufRead;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let receiver = rag_aws_emulator::OtlpReceiver::start().await?;
    println!("otlp receiver on {}", receiver.url);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    std::thread::spawn(move || {
        for _ in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.blocking_send(()).is_err() {
                return;
            }
        }
    });
    while rx.recv().await.is_some() {
        println!(
            "{} spans in {} exports",
            receiver.spans().len(),
            receiver.exports()
        );
    }
    Ok(())
}
