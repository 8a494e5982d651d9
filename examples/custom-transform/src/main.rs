//! `planrun-shop`: the whole `planrun` command line, with the shop's transforms and
//! without the memoir ones. In a crate of your own, name the binary `planrun`.

fn main() {
    let planrun = planrun_cli::Planrun::new().with_transforms(shop_migrations::register);
    std::process::exit(planrun.run(std::env::args_os()));
}
