use clap::Parser;

fn main() {
    // color-eyre for panics (bug reports); ordinary errors get one clear line.
    let _ = color_eyre::install();
    let cli = oddity::cli::Cli::parse();
    match oddity::cmd::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            std::process::exit(2);
        }
    }
}
