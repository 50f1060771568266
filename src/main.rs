fn main() {
    nix_confinement_generator::at_exit::exit_follows();
    std::process::exit(nix_confinement_generator::cli::main());
}
