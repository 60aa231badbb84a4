from clusternet.controllermanager.app import main

main()
