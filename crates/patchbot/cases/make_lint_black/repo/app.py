print( 'hi' )
