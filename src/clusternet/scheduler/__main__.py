from clusternet.scheduler.app import main

main()
