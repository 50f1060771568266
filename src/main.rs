fn main() {
    std::process::exit(nix_confinement_generator::cli::main());
}
