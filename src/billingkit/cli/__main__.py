from billingkit.cli import main

main()
