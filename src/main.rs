use clap::Parser;

fn main() -> color_eyre::Result<()> {
    color_eyre::install()?;
    let cli = oddity::cli::Cli::parse();
    let code = oddity::cmd::run(cli)?;
    std::process::exit(code);
}
