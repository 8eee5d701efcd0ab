use clap::Parser;

fn main() {
    // color-eyre for panics (bug reports); ordinary errors get one clear line.
    let _ = color_eyre::install();
    let cli = oddity::cli::Cli::parse();
    oddity::cmd::exit(oddity::cmd::run(cli));
}
